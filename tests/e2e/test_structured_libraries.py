"""End to end: the structured-output and agent libraries people point at a local server.

langchain-openai's `with_structured_output`, instructor and a pydantic-ai agent, against a
real `hearth serve` on the bundled model. The grammar makes their pydantic models parse
every time.
"""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field


class City(BaseModel):
    name: str = Field(max_length=30)
    country: str = Field(max_length=30)
    population_millions: int


ASK = "Describe the city of Paris."


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_langchain_with_structured_output(server, model_id, method):
    langchain_openai = pytest.importorskip("langchain_openai")
    llm = langchain_openai.ChatOpenAI(
        model=model_id,
        base_url=server.api,
        api_key="unused",
        temperature=0,
        max_tokens=120,
        max_retries=0,
    )
    city = llm.with_structured_output(City, method=method).invoke(ASK)
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
        model=model_id,
        response_model=City,
        max_retries=0,
        max_tokens=120,
        temperature=0,
        messages=[{"role": "user", "content": ASK}],
    )
    assert isinstance(city, City)


def test_pydantic_ai_agent_calls_its_tool_then_returns_the_output_model(server, model_id):
    """pydantic-ai's agent loop: a function tool, its result sent back, then the structured
    output through pydantic-ai's own output tool (tool_choice `required`, so the grammar
    keeps every call valid). The tool offers itself only until it has been called once:
    the 135M model would otherwise call it forever instead of answering."""
    from pydantic_ai import Agent, UsageLimits
    from pydantic_ai.messages import ToolReturnPart
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    class Place(BaseModel):
        name: str = Field(max_length=30)
        country: str = Field(max_length=30)

    model = OpenAIChatModel(
        model_id, provider=OpenAIProvider(base_url=server.api, api_key="unused")
    )
    agent = Agent(model, output_type=Place, model_settings={"temperature": 0, "max_tokens": 120})
    asked: list[str] = []

    async def until_called(ctx, tool_def):
        return None if asked else tool_def

    @agent.tool_plain(prepare=until_called)
    def country_of(city: str) -> str:
        """The country a city is in."""
        asked.append(city)
        return "France"

    result = agent.run_sync("Which country is Paris in?", usage_limits=UsageLimits(request_limit=4))
    assert isinstance(result.output, Place)
    assert asked and all(isinstance(city, str) and city for city in asked)
    returned = [
        part
        for message in result.all_messages()
        for part in message.parts
        if isinstance(part, ToolReturnPart) and part.tool_name == "country_of"
    ]
    assert returned and returned[0].content == "France"
