"""Post-training INT8 quantization of BERT-style classifiers: ONNX export, ONNX Runtime fusion and
dynamic/static quantization, Intel Neural Compressor (PT2E), and runners mapping numpy ids to logits."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Iterator, Literal, Mapping, Sequence

import numpy as np
import torch

from tinynlp.errors import QuantizationError
from tinynlp.inference import FEED_ORDER, INPUT_NAMES, SHAPE_INPUT, Runner, torch_logits  # noqa: F401  re-exported
from tinynlp.ner import uses_word_shapes

log = logging.getLogger(__name__)

Batch = Mapping[str, np.ndarray]
INC_PROGRAM = "model.pt2"
INC_META = "inc.json"


@contextlib.contextmanager
def _replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file next to `path`; on success it replaces `path` in one rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def file_size_mb(path: str | os.PathLike) -> float:
    """Size in MiB of a file, or of every file under a directory (an INC artifact)."""
    path = Path(path)
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    return sum(p.stat().st_size for p in files) / 2**20


def _set_attention(model: torch.nn.Module, implementation: str) -> None:
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(implementation)
    elif getattr(model, "config", None) is not None:
        model.config._attn_implementation = implementation


@contextlib.contextmanager
def _eager_attention(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """ORT's attention fusion matches the explicit softmax(QK^T)V graph, which SDPA hides;
    the caller's model gets its own implementation back afterwards."""
    previous = getattr(getattr(model, "config", None), "_attn_implementation", None)
    _set_attention(model, "eager")
    try:
        yield model
    finally:
        if previous and previous != "eager":
            _set_attention(model, previous)


def input_names(model: torch.nn.Module) -> tuple[str, ...]:
    """The inputs a model's graph takes: token_type_ids too when it learnt word shapes."""
    return INPUT_NAMES + ((SHAPE_INPUT,) if uses_word_shapes(model) else ())


def _example_inputs(model: torch.nn.Module, batch: int = 2, length: int = 16) -> tuple[torch.Tensor, ...]:
    # sizes above 1: exporters turn dimensions seen as 1 into constants
    vocab = int(getattr(getattr(model, "config", None), "vocab_size", 2) or 2)
    ids = torch.arange(batch * length, dtype=torch.long).remainder(vocab).reshape(batch, length)
    return (ids, torch.ones_like(ids), torch.ones_like(ids))[: len(input_names(model))]


def max_positions(model: torch.nn.Module) -> int:
    return int(getattr(getattr(model, "config", None), "max_position_embeddings", 512) or 512)


def export_onnx(model: torch.nn.Module, path: str | os.PathLike, opset: int = 17) -> Path:
    """Legacy (TorchScript) ONNX export with inputs input_ids/attention_mask, output logits and dynamic
    batch and sequence axes; written to a temporary file and renamed onto `path`."""
    return _export(model, path, "logits", opset)


class MeanPooledEncoder(torch.nn.Module):
    """A classifier's encoder alone, mean-pooled over real tokens: one vector per text (drift tests)."""

    def __init__(self, classifier: torch.nn.Module):
        super().__init__()
        self.encoder = classifier.base_model
        self.config = classifier.config
        self.train(classifier.training)  # a new Module starts in training mode: keep the caller's

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def export_encoder_onnx(model: torch.nn.Module, path: str | os.PathLike, opset: int = 17) -> Path:
    """The classifier's encoder as ONNX with one output, `embedding` [batch, hidden]."""
    return _export(MeanPooledEncoder(model), path, "embedding", opset)


def _export(model: torch.nn.Module, path: str | os.PathLike, output: str, opset: int) -> Path:
    path = Path(path)
    was_training = model.training
    model.eval()
    example = _example_inputs(model, length=min(16, max_positions(model)))
    try:
        with _eager_attention(model), torch.no_grad():
            result = model(*example)
            rank = (result if isinstance(result, torch.Tensor) else result.logits).dim()
            names = input_names(model)
            axes = {name: {0: "batch", 1: "sequence"} for name in names}
            axes[output] = {0: "batch", 1: "sequence"} if rank == 3 else {0: "batch"}
            with _replacing(path) as tmp, warnings.catch_warnings():
                # known and harmless: the legacy exporter's deprecation notices, the mask code's constant
                # padding check, and aten::index on mask indices, which are never negative
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
                warnings.filterwarnings("ignore", message="The feature will be removed", category=DeprecationWarning)
                warnings.filterwarnings("ignore", message="Exporting aten::index operator", category=UserWarning)
                torch.onnx.export(model, example, str(tmp), input_names=list(names), output_names=[output],
                                  dynamic_axes=axes, opset_version=opset, do_constant_folding=True, dynamo=False)
    finally:
        model.train(was_training)
    return path


class OnnxRunner:
    """A CPU InferenceSession with pinned threads, so latencies of variants are comparable."""

    def __init__(self, path: str | os.PathLike, threads: int = 1):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads > 0:  # 0: ORT's default, one thread per physical core
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        self.output_name = "logits" if "logits" in outputs else outputs[0]
        unknown = set(self.input_names) - {*INPUT_NAMES, SHAPE_INPUT}
        if unknown:
            raise QuantizationError(f"{path}: graph needs inputs {sorted(unknown)} that a runner cannot feed")

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray,
                 token_type_ids: np.ndarray | None = None) -> np.ndarray:
        ids = np.asarray(input_ids, dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.asarray(attention_mask, dtype=np.int64),
                 SHAPE_INPUT: np.zeros_like(ids) if token_type_ids is None else np.asarray(token_type_ids, np.int64)}
        logits = self.session.run([self.output_name], {name: feeds[name] for name in self.input_names})[0]
        return logits.astype(np.float32, copy=False)


def max_abs_difference(model: torch.nn.Module, candidate: str | os.PathLike | Runner,
                       batches: Sequence[Batch]) -> float:
    """Largest |candidate - PyTorch| logit over real tokens; `candidate` is an ONNX path or any runner."""
    runner = OnnxRunner(candidate, threads=torch.get_num_threads()) if isinstance(candidate, (str, os.PathLike)) \
        else candidate
    model.eval()
    worst = 0.0
    for batch in batches:
        arrays = _arrays(batch)
        diff = np.abs(runner(*arrays) - torch_logits(model, *arrays))
        if diff.ndim == 3:  # token logits: padded positions are never read downstream
            diff = diff[np.asarray(batch["attention_mask"]).astype(bool)]
        worst = max(worst, float(diff.max(initial=0.0)))
    return worst


def check_matches(model: torch.nn.Module, candidate: str | os.PathLike | Runner, batches: Sequence[Batch],
                  atol: float = 1e-3, name: str | None = None) -> float:
    """max_abs_difference, raising QuantizationError (naming the file and tolerance) above `atol`."""
    difference = max_abs_difference(model, candidate, batches)
    if not difference <= atol:  # also catches NaN
        label = name or (str(candidate) if isinstance(candidate, (str, os.PathLike)) else type(candidate).__name__)
        raise QuantizationError(f"{label}: logits differ from the PyTorch model by {difference:.3g}, "
                                f"above the tolerance {atol:g}")
    return difference


def attention_shapes(model: torch.nn.Module) -> list[tuple[int, int]]:
    """(heads, head size) per layer, read from the weights: structured pruning leaves the config stale."""
    shapes = []
    for module in model.modules():
        query, head_size = getattr(module, "query", None), getattr(module, "attention_head_size", None)
        if isinstance(query, torch.nn.Linear) and head_size:
            shapes.append((query.out_features // int(head_size), int(head_size)))
    return shapes


def fusion_geometry(model: torch.nn.Module) -> tuple[int, int]:
    """(num_heads, hidden_size) for ORT's attention fusion, hidden_size being the attention width
    (heads x head size); (0, 0) when layers differ in head count, which one fusion setting cannot express."""
    shapes = set(attention_shapes(model))
    if len(shapes) != 1:
        return 0, 0
    heads, head_size = shapes.pop()
    return heads, heads * head_size


def optimize_onnx(src: str | os.PathLike, dst: str | os.PathLike, num_heads: int, hidden_size: int,
                  opt_level: int = 1) -> dict[str, int]:
    """Fuse attention, LayerNorm and GELU with ORT's BERT optimizer; returns the fused-operator counts.
    num_heads/hidden_size come from `fusion_geometry`; 0 fuses everything but attention."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    if num_heads <= 0 or hidden_size <= 0:
        # HF reshapes to (-1, head_size), so ORT cannot read head counts from the graph, and a wrong
        # count fuses into silently wrong attention: better no attention fusion at all
        log.warning("%s: attention left unfused (head count unknown or differs per layer)", src)
        options.enable_attention = False
        num_heads = hidden_size = 0
    try:
        optimized = optimize_model(str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden_size,
                                   optimization_options=options, opt_level=opt_level)
    except Exception as exc:  # an unfused graph is still a correct graph
        log.warning("%s: ORT fusion failed (%s: %s); keeping the graph unfused", src, type(exc).__name__, exc)
        with _replacing(dst) as tmp:
            shutil.copyfile(src, tmp)
        return {}
    with _replacing(dst) as tmp:
        optimized.save_model_to_file(str(tmp))
    fused = {op: count for op, count in optimized.get_fused_operator_statistics().items() if count}
    if num_heads and not fused.get("Attention"):
        log.warning("%s: no attention pattern matched; only LayerNorm/GELU fused", src)
    return fused


def quantize_dynamic_onnx(src: str | os.PathLike, dst: str | os.PathLike, per_channel: bool = True,
                          fp32_nodes: Sequence[str] = ()) -> Path:
    """INT8 weights, activations quantized per call (MatMulInteger / QAttention); `fp32_nodes` stay float."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _replacing(dst) as tmp:
        # fused contrib ops (Attention, SkipLayerNormalization) carry no type information; all are float
        quantize_dynamic(str(src), str(tmp), per_channel=per_channel, weight_type=QuantType.QInt8,
                         nodes_to_exclude=list(fp32_nodes), extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return Path(dst)


def weight_nodes(path: str | os.PathLike) -> list[str]:
    """Nodes that dynamic quantization turns INT8, in graph order: products with a constant float weight
    (MatMul, fused Attention), the fused embedding layer and embedding lookups."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    floats = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    weight_input = {"MatMul": 1, "Attention": 1, "Gather": 0, "EmbedLayerNormalization": 2}
    return [n.name for n in graph.node if n.op_type in weight_input
            and len(n.input) > weight_input[n.op_type] and n.input[weight_input[n.op_type]] in floats]


def outputs_on(runner: Runner, batches: Sequence[Batch]) -> list[np.ndarray]:
    """The runner's logits on padded batches, one row per example (per real token for tagging)."""
    rows = []
    for batch in batches:
        logits = runner(*_arrays(batch))
        rows.append(logits[np.asarray(batch["attention_mask"]).astype(bool)] if logits.ndim == 3 else logits)
    return rows


def output_divergence(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> float:
    """Mean KL(reference || candidate) of the softmax of paired logits rows (examples or tokens): how far
    a quantized graph's predicted distributions moved from the float graph's. Unlike a change of accuracy
    it needs no labels, and flips in either direction do not cancel out."""
    ref = np.concatenate([np.asarray(r, np.float64).reshape(-1, np.shape(r)[-1]) for r in reference])
    new = np.concatenate([np.asarray(c, np.float64).reshape(-1, np.shape(c)[-1]) for c in candidate])
    if ref.shape != new.shape:
        raise ValueError(f"outputs differ in shape: {ref.shape} against {new.shape}")
    log_p = ref - np.logaddexp.reduce(ref, axis=-1, keepdims=True)
    log_q = new - np.logaddexp.reduce(new, axis=-1, keepdims=True)
    return float((np.exp(log_p) * (log_p - log_q)).sum(-1).mean()) if len(ref) else 0.0


def rank_sensitivity(graph: str | os.PathLike, batches: Sequence[Batch], per_channel: bool = False,
                     threads: int = 1) -> tuple[float, list[tuple[str, float]]]:
    """How much each weight node's INT8 error moves the outputs, measured end to end: the divergence of
    the fully dynamic-INT8 graph from the float one on `batches`, and for each node the divergence when
    that node alone stays float (leave one out), most sensitive first. Errors of early layers propagate
    (and outlier activations are local), so measuring the whole graph ranks better than a per-layer error."""
    reference = outputs_on(OnnxRunner(graph, threads), batches)
    with tempfile.TemporaryDirectory(prefix="tinynlp-sensitivity-") as workdir:
        target = Path(workdir) / "candidate.onnx"

        def divergence(fp32_nodes: Sequence[str]) -> float:
            quantize_dynamic_onnx(graph, target, per_channel=per_channel, fp32_nodes=fp32_nodes)
            return output_divergence(reference, outputs_on(OnnxRunner(target, threads), batches))

        full = divergence(())
        ranking = sorted(((node, divergence([node])) for node in weight_nodes(graph)), key=lambda pair: pair[1])
    return full, ranking


class _BatchReader:
    """CalibrationDataReader over in-memory batches, feeding only the inputs the graph declares."""

    def __init__(self, batches: Sequence[Batch], input_names: Sequence[str]):
        self.feeds = [{name: _feed(batch, name) for name in input_names} for batch in batches]
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.feeds):
            return None
        self.position += 1
        return self.feeds[self.position - 1]

    def rewind(self) -> None:
        self.position = 0


def _feed(batch: Batch, name: str) -> np.ndarray:
    if name == "token_type_ids" and name not in batch:
        return np.zeros_like(np.asarray(batch["input_ids"], dtype=np.int64))
    return np.asarray(batch[name], dtype=np.int64)


@contextlib.contextmanager
def _working_directory(directory: Path) -> Iterator[None]:
    previous = os.getcwd()
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(previous)


def _preprocessed(src: Path, workdir: Path) -> Path:
    """Shape-inferred copy of `src` (the quantizer skips tensors of unknown type), or `src` if that fails."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, target = src.resolve(), (workdir / "preprocessed.onnx").resolve()
    try:
        # on failure ORT dumps sym_shape_infer_temp.onnx and its weights into the working directory
        with _working_directory(workdir):
            # auto_merge: HF graphs mix symbolic lengths (e.g. min(512, sequence)) that strict inference rejects
            quant_pre_process(str(src), str(target), skip_optimization=True, auto_merge=True)
        return target
    except Exception as exc:
        log.warning("%s: shape pre-processing failed (%s: %s); calibrating the graph as is",
                    src, type(exc).__name__, exc)
        return src


def _activation_matmuls(path: Path) -> list[str]:
    """MatMuls of two activations (QK^T, PV): one range per tensor fits attention scores badly."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    constants = {i.name for i in graph.initializer}
    return [n.name for n in graph.node if n.op_type == "MatMul" and not constants.intersection(n.input)]


def quantize_static_onnx(src: str | os.PathLike, dst: str | os.PathLike, calibration_batches: Sequence[Batch],
                         per_channel: bool = True) -> Path:
    """QDQ INT8 with MinMax ranges from `calibration_batches` (lengths may differ between batches).
    Works best on the unfused graph: ORT's QDQ quantizer does not quantize fused Attention nodes."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if not calibration_batches:
        raise QuantizationError(f"{src}: static quantization needs at least one calibration batch")
    with tempfile.TemporaryDirectory(prefix="tinynlp-quant-") as workdir:
        model = _preprocessed(Path(src), Path(workdir))
        inputs = [i.name for i in onnx.load(str(model), load_external_data=False).graph.input]
        with _replacing(dst) as tmp:
            quantize_static(
                str(model), str(tmp), _BatchReader(calibration_batches, inputs), quant_format=QuantFormat.QDQ,
                # MatMul weights and the embedding tables; the rest (LayerNorm, softmax, adds) stays float
                op_types_to_quantize=["MatMul", "Gather"], nodes_to_exclude=_activation_matmuls(model),
                per_channel=per_channel, weight_type=QuantType.QInt8,
                # U8S8 has the fast VNNI kernels on x86; S8S8 measured 4-5x slower here
                activation_type=QuantType.QUInt8,
                # MinMax reduces each batch to scalars; histogram methods need equal-length batches
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return Path(dst)


class _Logits(torch.nn.Module):
    """Returns the logits tensor alone, so a saved program loads without transformers' output classes."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        out = self.inner(input_ids, attention_mask) if token_type_ids is None else \
            self.inner(input_ids, attention_mask, token_type_ids)
        return out if isinstance(out, torch.Tensor) else out["logits"] if isinstance(out, Mapping) else out[0]


def _dynamic_shapes(max_length: int, inputs: int = len(INPUT_NAMES)) -> dict[str, dict[int, torch.export.Dim]]:
    batch = torch.export.Dim("batch", min=1)
    # the position-embedding table bounds the sequence length
    sequence = torch.export.Dim("sequence", min=2, max=max_length)
    return {name: {0: batch, 1: sequence} for name in FEED_ORDER[:inputs]}


def _arrays(batch: Batch) -> tuple[np.ndarray, ...]:
    """A batch's input arrays in the order runners and forward() take them."""
    return tuple(batch[name] for name in FEED_ORDER if name in batch)


def _tensors(batch: Batch) -> tuple[torch.Tensor, ...]:
    return tuple(torch.as_tensor(np.ascontiguousarray(array, dtype=np.int64)) for array in _arrays(batch))


def _default_buckets(max_length: int) -> list[int]:
    sizes, size = [], 16
    while size < max_length:
        sizes.append(size)
        size *= 2
    return sizes + [max_length]


class IncRunner:
    """An INC-quantized PT2E program: numpy in, float32 logits out. Inputs are right-padded (mask 0)
    to a bucket length so torch.compile builds one specialised graph per bucket, not per length."""

    def __init__(self, module: torch.nn.Module, max_length: int, threads: int = 0, compile: bool = True,
                 buckets: Sequence[int] | None = None, inputs: int = len(INPUT_NAMES)):
        import torch._inductor.config  # noqa: F401  patched on every call, see __call__

        self.module = module
        self.inputs = inputs  # 3: the program takes token_type_ids (word shapes)
        self.max_length = max_length
        self.buckets = sorted(set(buckets or _default_buckets(max_length)))
        if threads > 0:
            torch.set_num_threads(threads)  # process-wide: torch has no per-model thread pool
        self.compiled = compile
        self.forward = _compile(module) if compile else module

    def bucket_length(self, length: int) -> int:
        for size in self.buckets:
            if size >= length:
                return size
        raise QuantizationError(f"sequence length {length} exceeds the model's maximum {self.buckets[-1]}")

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray,
                 token_type_ids: np.ndarray | None = None) -> np.ndarray:
        arrays = (input_ids, attention_mask, np.zeros_like(input_ids) if token_type_ids is None else token_type_ids)
        tensors = [torch.as_tensor(np.ascontiguousarray(a, dtype=np.int64)) for a in arrays[: self.inputs]]
        length = tensors[0].shape[1]
        padding = self.bucket_length(length) - length
        if padding:
            tensors = [torch.nn.functional.pad(t, (0, padding)) for t in tensors]
        # freezing lets inductor pre-pack the INT8 weights (without it the graph stays slow); patched per call
        # rather than globally, and passing it as torch.compile(options=...) fails on this torch
        with torch.no_grad(), torch._inductor.config.patch(freezing=True):
            logits = self.forward(*tensors)
        if logits.dim() == 3:
            logits = logits[:, :length]
        return np.ascontiguousarray(logits.float().numpy())

    def warm_up(self, lengths: Sequence[int], batch_sizes: Sequence[int] = (1,)) -> list[int]:
        """Compile every bucket that `lengths` fall into (seconds each), so timing starts warm."""
        buckets = sorted({self.bucket_length(length) for length in lengths})
        for batch_size in batch_sizes:
            for size in buckets:
                self(np.zeros((batch_size, size), np.int64), np.ones((batch_size, size), np.int64))  # types: 0
        return buckets


def _compile(module: torch.nn.Module) -> Callable:
    # dynamic=False: shape-specialised kernels measured faster than dynamic ones; bucket count x batch
    # sizes can pass the default 8 recompiles, after which dynamo silently falls back to slow eager
    import torch._dynamo.config

    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    return torch.compile(module, dynamic=False)


def _inc_export(model: torch.nn.Module) -> torch.nn.Module:
    from neural_compressor.torch.export import export

    was_training = model.training
    example = _example_inputs(model, length=min(16, max_positions(model)))
    try:
        with _eager_attention(model), warnings.catch_warnings():
            # transformers' output-capturing global looks like a side effect to the tracer; it is not read
            warnings.filterwarnings("ignore", message="While compiling, we found certain side effects")
            return export(model.eval(), example, dynamic_shapes=_dynamic_shapes(max_positions(model), len(example)))
    finally:
        model.train(was_training)


def inc_quantize(model: torch.nn.Module, calibration_batches: Sequence[Batch],
                 mode: Literal["dynamic", "static"] = "dynamic", threads: int = 0, compile: bool = True,
                 buckets: Sequence[int] | None = None) -> IncRunner:
    """INT8 through Intel Neural Compressor's PT2E flow (export, prepare, calibrate, convert).
    Deterministic for the same model and batches, so it can be re-run instead of loaded."""
    from neural_compressor.torch.quantization import DynamicQuantConfig, StaticQuantConfig, convert, prepare

    if mode not in ("dynamic", "static"):
        raise ValueError(f"INC mode must be 'dynamic' or 'static', got {mode!r}")
    if not calibration_batches:
        raise QuantizationError("INC quantization needs at least one calibration batch")
    config = (DynamicQuantConfig(w_granularity="per_channel") if mode == "dynamic"
              else StaticQuantConfig(w_granularity="per_channel"))
    prepared = prepare(_inc_export(model), config)
    # convert() without any forward pass gives silently wrong outputs, even in dynamic mode
    with torch.no_grad():
        for batch in calibration_batches if mode == "static" else calibration_batches[:1]:
            prepared(*_tensors(batch))
    return IncRunner(_Logits(convert(prepared)), max_positions(model), threads, compile, buckets,
                     len(input_names(model)))


def save_inc(runner: IncRunner, directory: str | os.PathLike) -> Path:
    """Persist the quantized program (torch.export format) and the runner settings in `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    length = min(16, runner.max_length)
    example = (torch.zeros((2, length), dtype=torch.long), torch.ones((2, length), dtype=torch.long),
               torch.zeros((2, length), dtype=torch.long))[: runner.inputs]
    program = torch.export.export(runner.module, example,
                                  dynamic_shapes=_dynamic_shapes(runner.max_length, runner.inputs))
    with _replacing(directory / INC_PROGRAM) as tmp:
        torch.export.save(program, str(tmp))
    meta = {"format": "torch.export", "max_length": runner.max_length, "buckets": runner.buckets,
            "inputs": runner.inputs}
    with _replacing(directory / INC_META) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return directory


def load_inc(directory: str | os.PathLike, threads: int = 0, compile: bool = True) -> IncRunner:
    """The runner `save_inc` wrote; works in a fresh process."""
    import torchao.quantization.pt2e  # noqa: F401  registers the quantize/dequantize ops the program calls

    directory = Path(directory)
    meta = json.loads((directory / INC_META).read_text(encoding="utf-8"))
    program = torch.export.load(str(directory / INC_PROGRAM))
    return IncRunner(program.module(), int(meta["max_length"]), threads, compile, meta["buckets"],
                     int(meta.get("inputs", len(INPUT_NAMES))))
