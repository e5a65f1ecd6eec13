"""A batch line as the live endpoint would answer it, at batch priority.

The runner (runtime/batch/runner.py) knows no HTTP; this is the `LineExecutor` the server
hands it. Each line's body is validated by the endpoint's own request model and runs
through the same pipeline and response builders as the endpoint, so an output line's body
is what the same request sent live returns, and a failing line's error is the live error
(status and OpenAI body) from the one error table. Only "try again later" errors (a full
queue, a model still loading) go back to the runner, which retries the line.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from hearth.runtime.batch.runner import LineResponse
from hearth.runtime.errors import EngineNotReady, InvalidRequest, Overloaded
from hearth.runtime.pipeline import ChatPolicy, collect_all, prepare_chat, prepare_completion
from hearth.server.errors import to_openai, validation_error
from hearth.server.openai.chat.protocol import ChatCompletionRequest
from hearth.server.openai.chat.serving import whole_completion as whole_chat
from hearth.server.openai.completions.protocol import CompletionRequest
from hearth.server.openai.completions.serving import whole_completion as whole_text
from hearth.server.openai.embeddings.protocol import EmbeddingRequest
from hearth.server.openai.embeddings.router import create_embeddings
from hearth.server.openai.responses import serving as responses
from hearth.server.openai.responses.protocol import ResponseRequest
from hearth.server.state import ServerState

Handler = Callable[["EndpointLines", dict], Awaitable[BaseModel]]


class EndpointLines:
    """Runs batch lines against this server's registry, as the endpoints do."""

    def __init__(self, state: ServerState) -> None:
        self._state = state
        self._policy = replace(ChatPolicy.of(state.settings), priority="batch")

    async def execute(self, endpoint: str, body: dict) -> LineResponse:
        if not self._state.ready:
            raise EngineNotReady("The model is still loading.")
        try:
            result = await HANDLERS[endpoint](self, body)
        except (Overloaded, EngineNotReady):
            raise
        except ValidationError as invalid:
            mapped = to_openai(validation_error(RequestValidationError(invalid.errors())))
            return LineResponse(mapped.status, mapped.body.model_dump())
        except Exception as error:  # noqa: BLE001 - every failure is the line's answer
            mapped = to_openai(error)
            return LineResponse(mapped.status, mapped.body.model_dump())
        return LineResponse(200, result.model_dump(mode="json", exclude_none=False))

    async def chat(self, body: dict) -> BaseModel:
        request = _no_stream(ChatCompletionRequest.model_validate(body))
        async with self._state.registry.acquire(request.model) as handle:
            prepared = await prepare_chat(handle, request.to_runtime(), self._policy)
        return whole_chat(prepared, await collect_all(prepared), request.legacy_functions())

    async def completion(self, body: dict) -> BaseModel:
        request = _no_stream(CompletionRequest.model_validate(body))
        async with self._state.registry.acquire(request.model) as handle:
            prepared = await prepare_completion(
                handle, request.to_runtime(), priority=self._policy.priority
            )
        return whole_text(prepared, await collect_all(prepared), request)

    async def embedding(self, body: dict) -> BaseModel:
        return await create_embeddings(EmbeddingRequest.model_validate(body), self._state.registry)

    async def response(self, body: dict) -> BaseModel:
        request = _no_stream(ResponseRequest.model_validate(body))
        state = self._state
        return await responses.create(state.registry, state.responses, request, self._policy)


def _no_stream(request: BaseModel) -> BaseModel:
    if getattr(request, "stream", False):
        raise InvalidRequest("stream is not supported in a batch.", param="stream")
    return request


HANDLERS: dict[str, Handler] = {
    "/v1/chat/completions": EndpointLines.chat,
    "/v1/completions": EndpointLines.completion,
    "/v1/embeddings": EndpointLines.embedding,
    "/v1/responses": EndpointLines.response,
}
