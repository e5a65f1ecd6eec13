"""The Batch API's wire format (OpenAI's): fields in the order of its reference."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from hearth.runtime.batch.store import BatchRecord, BatchStatus, RequestCounts, TokenUsage
from hearth.server.openai.protocol import RequestBody

MAX_METADATA_KEYS = 16


class BatchCreateRequest(RequestBody):
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None = None

    @field_validator("metadata")
    @classmethod
    def _small_metadata(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return value
        if len(value) > MAX_METADATA_KEYS:
            raise ValueError(f"at most {MAX_METADATA_KEYS} keys")
        if any(len(key) > 64 or len(item) > 512 for key, item in value.items()):
            raise ValueError("keys are at most 64 characters, values at most 512")
        return value


class BatchError(BaseModel):
    code: str | None = None
    line: int | None = None
    message: str | None = None
    param: str | None = None


class BatchErrors(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchError]


class BatchRequestCounts(BaseModel):
    completed: int
    failed: int
    total: int


class InputTokensDetails(BaseModel):
    cached_tokens: int


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int


class BatchUsage(BaseModel):
    """Tokens over the batch's answered lines (OpenAI's names, as the Responses API's)."""

    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int

    @classmethod
    def of(cls, usage: TokenUsage) -> BatchUsage:
        return cls(
            input_tokens=usage.input_tokens,
            input_tokens_details=InputTokensDetails(cached_tokens=usage.cached_tokens),
            output_tokens=usage.output_tokens,
            output_tokens_details=OutputTokensDetails(reasoning_tokens=usage.reasoning_tokens),
            total_tokens=usage.total_tokens,
        )


class Batch(BaseModel):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    model: str | None = None
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: BatchRequestCounts = Field(
        default_factory=lambda: BatchRequestCounts(completed=0, failed=0, total=0)
    )
    usage: BatchUsage | None = None
    metadata: dict[str, str] | None = None

    @classmethod
    def of(cls, record: BatchRecord, counts: RequestCounts, usage: TokenUsage) -> Batch:
        fields = {
            name: value
            for name, value in record.__dict__.items()
            if name not in ("errors", "metadata")
        }
        errors = (
            BatchErrors(data=[BatchError.model_validate(e) for e in record.errors])
            if record.errors
            else None
        )
        return cls(
            **fields,
            errors=errors,
            metadata=record.metadata,
            request_counts=BatchRequestCounts(
                completed=counts.completed, failed=counts.failed, total=counts.total
            ),
            usage=BatchUsage.of(usage),
        )


class BatchList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Batch]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False
