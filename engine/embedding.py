"""Embeddings from any loaded model, in a llama.cpp context of their own.

Chat keeps its slots: embedding requests never touch the scheduler's context or KV. The
embedding context is made on first use, beside the chat context of the same llama_model
(weights are shared and read-only, so the two decode concurrently), with pooling taken from
the model's metadata and mean pooling where it declares none (a chat model), and each
vector L2-normalized as OpenAI's are. One input is decoded at a time under a lock, off the
event loop (llama_decode releases the GIL).
"""

from __future__ import annotations

import ctypes
import threading
from typing import TYPE_CHECKING

import llama_cpp
import numpy as np

from hearth.engine.batch import TokenBatch
from hearth.engine.errors import ContextExceeded, GenerationFailed, ModelLoadError

if TYPE_CHECKING:
    from hearth.engine.model import LlamaModel


class EmbeddingContext:
    def __init__(self, model: LlamaModel, n_ctx: int, threads: int) -> None:
        self._model = model
        self.n_ctx = n_ctx
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        # A non-causal model must see its whole input in one micro-batch.
        params.n_batch = params.n_ubatch = n_ctx
        params.n_seq_max = 1
        params.n_threads = params.n_threads_batch = threads
        params.embeddings = True
        params.pooling_type = (
            llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED
            if model.declares_pooling()
            else llama_cpp.LLAMA_POOLING_TYPE_MEAN
        )
        params.no_perf = True
        self._ctx = llama_cpp.llama_init_from_model(model.model, params)
        if not self._ctx:
            raise GenerationFailed(f"cannot create an embedding context of {n_ctx} tokens")
        try:
            model.apply_adapter(self._ctx)  # an adapter model embeds with its adapter too
        except ModelLoadError as refused:
            llama_cpp.llama_free(self._ctx)
            raise GenerationFailed(str(refused)) from None
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._n_embd = llama_cpp.llama_model_n_embd(model.model)
        self._batch = TokenBatch(n_ctx)
        self._lock = threading.Lock()

    def embed(self, tokens: list[int]) -> np.ndarray:
        """One input's pooled, normalized vector."""
        if not tokens or len(tokens) > self.n_ctx:
            raise ContextExceeded(limit=self.n_ctx, prompt_tokens=len(tokens))
        with self._lock:
            if self._ctx is None:
                raise GenerationFailed("the model was unloaded")
            llama_cpp.llama_memory_seq_rm(self._memory, -1, -1, -1)
            self._batch.clear()
            self._batch.add(tokens, 0, 0, True)
            self._batch.wants_logits[: len(tokens)] = 1  # every token's output feeds the pool
            status = self._run()
            if status != 0:
                raise GenerationFailed(f"llama.cpp failed to embed (status {status})")
            pointer = llama_cpp.llama_get_embeddings_seq(self._ctx, 0)
            if not pointer:
                raise GenerationFailed("llama.cpp returned no pooled embedding")
            vector = np.ctypeslib.as_array(
                ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(self._n_embd,)
            ).copy()
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm > 0 else vector

    def _run(self) -> int:
        self._batch.struct.n_tokens = self._batch.size
        if llama_cpp.llama_model_has_encoder(self._model.model):
            return llama_cpp.llama_encode(self._ctx, self._batch.struct)
        return llama_cpp.llama_decode(self._ctx, self._batch.struct)

    def close(self) -> None:
        with self._lock:
            if self._ctx:
                llama_cpp.llama_free(self._ctx)
                self._ctx = None
