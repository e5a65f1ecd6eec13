"""End to end: the structured-output libraries people point at a local server.

langchain-openai's `with_structured_output` and instructor, both against a real `hearth
serve` on the bundled model. The grammar makes their pydantic models parse every time.
"""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field


class City(BaseModel):
    name: str = Field(max_length=30)
    country: str = Field(max_length=30)
    population_millions: int


ASK = "Describe the city of Paris."


def test_langchain_with_structured_output_json_schema(server, model_id):
    langchain_openai = pytest.importorskip("langchain_openai")
    llm = langchain_openai.ChatOpenAI(
        model=model_id, base_url=server.api, api_key="unused", temperature=0, max_tokens=120,
        max_retries=0,
    )
    city = llm.with_structured_output(City, method="json_schema").invoke(ASK)
    assert isinstance(city, City)


def test_langchain_with_structured_output_function_calling(server, model_id):
    langchain_openai = pytest.importorskip("langchain_openai")
    llm = langchain_openai.ChatOpenAI(
        model=model_id, base_url=server.api, api_key="unused", temperature=0, max_tokens=120,
        max_retries=0,
    )
    city = llm.with_structured_output(City, method="function_calling").invoke(ASK)
    assert isinstance(city, City)


@pytest.mark.parametrize("mode", ["TOOLS", "JSON_SCHEMA"])
def test_instructor_modes(server, model_id, mode):
    instructor = pytest.importorskip("instructor")
    import openai

    client = instructor.from_openai(
        openai.OpenAI(base_url=server.api, api_key="unused", max_retries=0),
        mode=getattr(instructor.Mode, mode),
    )
    city = client.chat.completions.create(
        model=model_id, response_model=City, max_retries=0, max_tokens=120, temperature=0,
        messages=[{"role": "user", "content": ASK}],
    )
    assert isinstance(city, City)
