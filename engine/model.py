"""A loaded llama.cpp model and context, through llama-cpp-python's low-level API.

This is the one module that owns llama.cpp handles: it loads, tokenizes, turns tokens into
bytes and frees. The scheduler drives decoding; this class only answers questions about
the model and holds its memory.
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path

import llama_cpp
from llama_cpp import _logger as llama_logger

from hearth.engine import cpu, rpc
from hearth.engine.base import EngineOptions, ModelInfo
from hearth.engine.errors import ModelLoadError

log = logging.getLogger(__name__)


_backend_ready = False


def check_gguf(path: Path) -> None:
    """Read the GGUF header and tensor table before anything else starts.

    llama.cpp finds the same problems, but only after the server is up; checking first lets
    `hearth serve` refuse a missing, foreign or truncated file with one line and exit.
    """
    import gguf

    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    try:
        reader = gguf.GGUFReader(path)
        end = max((t.data_offset + t.n_bytes for t in reader.tensors), default=0)
    except Exception as error:  # noqa: BLE001 - any parse failure means "not a usable GGUF"
        if _sane_gguf_header(path):
            # gguf-py reads a cut file through numpy and fails with its internals ("cannot
            # reshape array..."); a header that makes sense means the rest is missing.
            size = path.stat().st_size
            raise ModelLoadError(
                f"{path} is truncated: it ends after {size} bytes, before all its data"
            ) from None
        raise ModelLoadError(f"{path} is not a valid GGUF file ({error})") from None
    size = path.stat().st_size
    if end > size:
        raise ModelLoadError(f"{path} is truncated: {size} bytes, its tensors need {end}")


def _sane_gguf_header(path: Path) -> bool:
    """Magic, a known version, and tensor and key counts no real file exceeds."""
    with path.open("rb") as file:
        header = file.read(24)
    if len(header) < 24 or header[:4] != b"GGUF":
        return False
    version = int.from_bytes(header[4:8], "little")
    tensors, keys = (int.from_bytes(header[i : i + 8], "little") for i in (8, 16))
    return version in (2, 3) and tensors < 1_000_000 and keys < 1_000_000


def _init_backend(verbose: bool) -> None:
    global _backend_ready
    # llama-cpp-python prints every llama.cpp log line to stderr unless told otherwise. Its
    # errors are reported as one line by whoever catches ModelLoadError, so keep it quiet.
    llama_logger.logger.setLevel(logging.DEBUG if verbose else logging.CRITICAL)
    if not _backend_ready:
        llama_cpp.llama_backend_init()
        _backend_ready = True


# --flash-attn: "auto" leaves it to llama.cpp, which turns it on wherever the device has
# the kernel (every CPU and GPU backend here). Off on a CPU, llama-bench checks 8 rows (a
# token and 7 guesses, engine/speculation.py) at 1,500 tokens of context 1.3-1.4x faster,
# since its kernel walks the KV cache once per query row; but through the server on was
# faster everywhere: 1.12x for one sampled stream, 1.13-1.14x at 4 and 8 streams, level on a
# copy (README, "Speculative decoding"). So llama.cpp's choice stays the default.
FLASH_ATTN_TYPES = {
    "auto": llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO,
    "on": llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED,
    "off": llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED,
}


class LlamaModel:
    def __init__(self, options: EngineOptions) -> None:
        _init_backend(log.isEnabledFor(logging.DEBUG))
        self.options = options
        if not options.path.is_file():
            raise ModelLoadError(f"model file not found: {options.path}")
        model_params = llama_cpp.llama_model_default_params()
        model_params.n_gpu_layers = options.n_gpu_layers
        model_params.use_extra_bufts = cpu.extra_buffers_allowed(options.amx)
        self.devices: list[int] = []
        if options.rpc:
            self.devices = rpc.add_workers(options.rpc)
            # Only this model's workers, NULL-terminated; kept alive through the load.
            self._device_array = (ctypes.c_void_p * (len(self.devices) + 1))(*self.devices, None)
            model_params.devices = ctypes.cast(self._device_array, ctypes.c_void_p)
            if options.n_gpu_layers == 0:  # workers given and no count: they take them all
                model_params.n_gpu_layers = -1
        self.model = llama_cpp.llama_model_load_from_file(str(options.path).encode(), model_params)
        if not self.model:
            raise ModelLoadError(
                f"cannot load {options.path}: not a valid GGUF model (or unsupported by llama.cpp)"
            )
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.context_params = self._context_params()
        self.ctx = llama_cpp.llama_init_from_model(self.model, self.context_params)
        if not self.ctx:
            llama_cpp.llama_model_free(self.model)
            raise ModelLoadError(
                f"cannot create a context of {options.n_ctx} x {options.n_seq} tokens for "
                f"{options.path.name}: lower --n-ctx or --parallel"
            )
        self.adapter = None
        if options.lora is not None:
            try:
                self.adapter = self._load_adapter(options.lora)
                self.apply_adapter(self.ctx)
            except ModelLoadError:
                self.close()
                raise
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.n_ctx_seq = llama_cpp.llama_n_ctx_seq(self.ctx)
        self._piece = ctypes.create_string_buffer(256)
        # Token -> bytes, filled as tokens are first generated. Bounded by the vocabulary:
        # about 120 bytes an entry, so at most ~31 MB even for a 256k vocabulary, and far
        # less in practice. A lookup is ~0.1 us where llama_token_to_piece through ctypes
        # cost 15-20 us a token inside the scheduler's step.
        self._pieces: dict[int, bytes] = {}
        self._end_tokens: dict[int, bool] = {}

    def _load_adapter(self, path: Path) -> llama_cpp.llama_adapter_lora_p:
        if not path.is_file():
            raise ModelLoadError(f"LoRA adapter not found: {path}")
        adapter = llama_cpp.llama_adapter_lora_init(self.model, str(path).encode())
        if not adapter:
            raise ModelLoadError(
                f"cannot apply {path.name} to {self.options.path.name}: not a GGUF LoRA "
                "adapter of this model (hearth convert makes one from a PEFT folder)"
            )
        return adapter

    def apply_adapter(self, ctx: llama_cpp.llama_context_p) -> None:
        """Run `ctx` with this model's LoRA adapter, if it has one.

        llama.cpp applies adapters to a context, to every sequence decoded in it; so each
        context of an adapter model gets it (the chat context, and the embedding one).
        """
        if self.adapter is None:
            return
        adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self.adapter)
        scales = (ctypes.c_float * 1)(self.options.lora_scale)
        if llama_cpp.llama_set_adapters_lora(ctx, adapters, 1, scales) != 0:
            raise ModelLoadError(f"llama.cpp refused the LoRA adapter {self.options.lora}")

    def _context_params(self) -> llama_cpp.llama_context_params:
        opts = self.options
        params = llama_cpp.llama_context_default_params()
        # Each slot gets its own KV stream of n_ctx cells (kv_unified off): a request that
        # was admitted can always use its whole context, whatever the other slots hold, and
        # attention only scans its own sequence.
        params.n_ctx = opts.n_ctx * opts.n_seq
        params.n_seq_max = opts.n_seq
        params.kv_unified = False
        params.n_batch = opts.n_batch
        params.n_ubatch = min(opts.n_batch, 512)
        params.n_threads = opts.threads
        params.n_threads_batch = opts.threads
        params.flash_attn_type = FLASH_ATTN_TYPES[opts.flash_attn]
        params.no_perf = True
        return params

    def info(self) -> ModelInfo:
        return ModelInfo(
            path=self.options.path,
            name=self.options.name,
            n_ctx=self.n_ctx_seq,
            n_ctx_train=llama_cpp.llama_model_n_ctx_train(self.model),
            n_params=llama_cpp.llama_model_n_params(self.model),
            size_bytes=llama_cpp.llama_model_size(self.model),
            description=self._description(),
            chat_template=self._chat_template(),
            bos_token=self.token_text(llama_cpp.llama_vocab_bos(self.vocab)),
            eos_token=self.token_text(llama_cpp.llama_vocab_eos(self.vocab)),
            add_bos=bool(llama_cpp.llama_vocab_get_add_bos(self.vocab)),
        )

    def device_report(self) -> list[dict[str, object]]:
        """The devices holding this model's layers, with their memory as the load left it:
        the local CPU (input layer, and the layers not offloaded) and each RPC worker's.
        Read once, at load: asking a worker again would go over its busy connection."""
        if not self.devices:
            return []
        local = rpc.local_devices()[:1]
        return [rpc.describe(device).report() for device in local + self.devices]

    def _description(self) -> str:
        buffer = ctypes.create_string_buffer(256)
        llama_cpp.llama_model_desc(self.model, buffer, len(buffer))
        return buffer.value.decode("utf-8", errors="replace")

    def _chat_template(self) -> str | None:
        template = llama_cpp.llama_model_chat_template(self.model, None)
        return template.decode("utf-8") if template else None

    def token_text(self, token: int) -> str:
        if token < 0:
            return ""
        text = llama_cpp.llama_vocab_get_text(self.vocab, token)
        return text.decode("utf-8", errors="replace") if text else ""

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        tokens = (llama_cpp.llama_token * capacity)()
        n = llama_cpp.llama_tokenize(
            self.vocab, data, len(data), tokens, capacity, add_special, parse_special
        )
        if n < 0:  # the buffer was too small; -n is the size needed
            capacity = -n
            tokens = (llama_cpp.llama_token * capacity)()
            n = llama_cpp.llama_tokenize(
                self.vocab, data, len(data), tokens, capacity, add_special, parse_special
            )
        return list(tokens[:n])

    def tokenize_prompt(
        self,
        text: str,
        pieces: tuple[tuple[str, bool], ...],
        *,
        add_special: bool,
        parse_special: bool,
    ) -> list[int]:
        """A prompt's tokens; with `pieces`, each stretch by its own parse_special flag.

        Only the first stretch may get the BOS. Tokenizing stretches apart means a token
        never spans markup and message text, which is the point: the message's text cannot
        merge into, or spell, a control token.
        """
        if not pieces:
            return self.tokenize(text, add_special=add_special, parse_special=parse_special)
        tokens: list[int] = []
        for piece_text, special in pieces:
            if piece_text:
                first = add_special and not tokens
                tokens += self.tokenize(piece_text, add_special=first, parse_special=special)
        return tokens

    def piece(self, token: int) -> bytes:
        """The bytes a token stands for. Control tokens render as nothing."""
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self._token_to_piece(token)
        return piece

    def special_piece(self, token: int) -> bytes:
        """The bytes a token stands for, a control token's own text (`<|im_start|>`) included."""
        return self._token_to_piece(token, special=True)

    def _token_to_piece(self, token: int, special: bool = False) -> bytes:
        n = llama_cpp.llama_token_to_piece(self.vocab, token, self._piece, 256, 0, special)
        if n < 0:
            buffer = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buffer, -n, 0, special)
            return buffer.raw[:n]
        return self._piece.raw[:n]

    def read_state(self, seq: int, limit: int) -> bytearray:
        """What KV sequence `seq` holds, as llama.cpp's sequence state: only the cells it
        uses, so a few hundred cells of SmolLM2-135M are about a megabyte. Empty when the
        sequence is, or when its state would take more than `limit` bytes."""
        size = llama_cpp.llama_state_seq_get_size(self.ctx, seq)
        if not 0 < size <= limit:
            return bytearray()
        state = bytearray(size)
        view = (ctypes.c_uint8 * size).from_buffer(state)
        written = llama_cpp.llama_state_seq_get_data(self.ctx, view, size, seq)
        return state if written == size else state[:written]

    def write_state(self, seq: int, state: bytearray) -> bool:
        """Make KV sequence `seq` hold a state from read_state; on failure it is left empty."""
        llama_cpp.llama_memory_seq_rm(self.memory, seq, -1, -1)
        if not state:
            return False
        view = (ctypes.c_uint8 * len(state)).from_buffer(state)
        if llama_cpp.llama_state_seq_set_data(self.ctx, view, len(state), seq):
            return True
        llama_cpp.llama_memory_seq_rm(self.memory, seq, -1, -1)
        return False

    def drops_tails(self) -> bool:
        """Whether a sequence's last tokens can be removed from its memory alone.

        Speculation needs it to drop the guesses that were wrong. A recurrent model (Mamba,
        RWKV) or a hybrid one keeps a state that folds every token in, which cannot be
        rolled back by positions."""
        return not (
            llama_cpp.llama_model_is_recurrent(self.model)
            or llama_cpp.llama_model_is_hybrid(self.model)
        )

    def is_end_of_generation(self, token: int) -> bool:
        end = self._end_tokens.get(token)
        if end is None:
            end = self._end_tokens[token] = bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))
        return end

    def declares_pooling(self) -> bool:
        """Whether the GGUF names a pooling type (embedding models do; chat models not)."""
        arch = ctypes.create_string_buffer(64)
        llama_cpp.llama_model_meta_val_str(self.model, b"general.architecture", arch, 64)
        key = arch.value + b".pooling_type"
        value = ctypes.create_string_buffer(16)
        return llama_cpp.llama_model_meta_val_str(self.model, key, value, 16) > 0

    def close(self) -> None:
        if self.ctx:
            llama_cpp.llama_free(self.ctx)
            self.ctx = None
        if getattr(self, "adapter", None):  # after the context that used it
            llama_cpp.llama_adapter_lora_free(self.adapter)
            self.adapter = None
        if self.model:
            llama_cpp.llama_model_free(self.model)
            self.model = None
