"""/v1/embeddings through the official openai client on the real chat model."""

from __future__ import annotations

import base64

import numpy as np
import openai
import pytest

pytestmark = pytest.mark.e2e


@pytest.fixture
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.api, api_key="none", max_retries=0)


def test_embeddings_are_normalized_and_similar_texts_are_closer(client, model_id):
    texts = ["The cat sat on the mat.", "A cat was sitting on a mat.", "Quarterly tax returns."]
    result = client.embeddings.create(model=model_id, input=texts, encoding_format="float")
    vectors = [np.array(item.embedding) for item in result.data]
    assert [item.index for item in result.data] == [0, 1, 2]
    assert all(abs(np.linalg.norm(v) - 1) < 1e-4 for v in vectors)
    assert vectors[0].shape == (576,)  # SmolLM2-135M's embedding width
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    assert result.usage.prompt_tokens > 0 and result.model == model_id


def test_the_same_text_gives_the_same_vector_as_tokens_and_as_base64(client, server, model_id):
    import httpx

    text = "Hello world"
    tokens = httpx.post(f"{server.url}/tokenize", json={"content": text}).json()["tokens"]
    as_text = client.embeddings.create(model=model_id, input=text, encoding_format="float")
    as_tokens = client.embeddings.create(model=model_id, input=tokens, encoding_format="float")
    assert np.allclose(as_text.data[0].embedding, as_tokens.data[0].embedding, atol=1e-5)
    # The openai client asks for base64 by default and decodes it itself.
    default = client.embeddings.create(model=model_id, input=text)
    assert np.allclose(default.data[0].embedding, as_text.data[0].embedding, atol=1e-5)
    raw = httpx.post(
        f"{server.api}/embeddings",
        json={"model": model_id, "input": text, "encoding_format": "base64"},
    ).json()
    decoded = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(decoded, as_text.data[0].embedding, atol=1e-5)


def test_dimensions_and_bad_input_are_refused_clearly(client, model_id):
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model=model_id, input="Hi", dimensions=64)
    assert refused.value.body["param"] == "dimensions"
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=model_id, input=[""])
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="nope", input="Hi")


def test_chat_keeps_working_beside_embeddings(client, model_id):
    client.embeddings.create(model=model_id, input="warm up the embedding context")
    reply = client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    assert reply.choices[0].message.content is not None
