// The official openai-node and Anthropic TypeScript clients against a running Hearth:
// node clients.mjs BASE_URL MODEL (BASE_URL ends in /v1, as the openai client wants it).
// Each check uses the client's own stream helpers, which rebuild the final object from the
// events and throw on an event sequence they do not expect. Prints one JSON line of results.
import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0 });
// The Anthropic client adds /v1 itself.
const anthropic = new Anthropic({
  baseURL: baseURL.replace(/\/v1$/, ""),
  apiKey: "unused",
  maxRetries: 0,
});

async function responsesStream() {
  const stream = client.responses.stream({
    model,
    instructions: "Answer in one short sentence.",
    input: "What is the capital of France?",
    max_output_tokens: 24,
    temperature: 0,
  });
  const types = [];
  let deltas = "";
  for await (const event of stream) {
    types.push(event.type);
    if (event.type === "response.output_text.delta") deltas += event.delta;
  }
  const final = await stream.finalResponse();
  return { types, deltas, text: final.output_text, status: final.status, id: final.id };
}

async function chatToolStream() {
  const stream = client.chat.completions.stream({
    model,
    messages: [{ role: "user", content: "What is the weather in Paris?" }],
    tools: [{
      type: "function",
      function: {
        name: "get_weather",
        description: "The current weather in a city",
        parameters: {
          type: "object",
          properties: { city: { type: "string" } },
          required: ["city"],
          additionalProperties: false,
        },
      },
    }],
    tool_choice: "required",
    // One call: allowed several, the 135M model repeats its call until max_tokens cuts it.
    parallel_tool_calls: false,
    max_tokens: 64,
    temperature: 0,
  });
  const final = await stream.finalChatCompletion();
  const choice = final.choices[0];
  return {
    finish_reason: choice.finish_reason,
    content: choice.message.content,
    calls: (choice.message.tool_calls ?? []).map((c) => ({
      id: c.id, name: c.function.name, arguments: c.function.arguments,
    })),
  };
}

async function messagesStream() {
  const stream = anthropic.messages.stream({
    model,
    max_tokens: 24,
    system: "Answer in one short sentence.",
    messages: [{ role: "user", content: "What is the capital of France?" }],
    temperature: 0,
  });
  const types = [];
  let deltas = "";
  stream.on("text", (text) => { deltas += text; });
  for await (const event of stream) types.push(event.type);
  const final = await stream.finalMessage();
  const text = final.content.filter((b) => b.type === "text").map((b) => b.text).join("");
  return { types, deltas, text, stop_reason: final.stop_reason, id: final.id, usage: final.usage };
}

async function messagesToolStream() {
  const stream = anthropic.messages.stream({
    model,
    max_tokens: 64,
    messages: [{ role: "user", content: "What is the weather in Paris?" }],
    tools: [{
      name: "get_weather",
      description: "The current weather in a city",
      input_schema: {
        type: "object",
        properties: { city: { type: "string" } },
        required: ["city"],
        additionalProperties: false,
      },
    }],
    tool_choice: { type: "any", disable_parallel_tool_use: true },
    temperature: 0,
  });
  const partial = [];
  stream.on("inputJson", (delta) => partial.push(delta));
  const final = await stream.finalMessage();
  const counted = await anthropic.messages.countTokens({
    model,
    messages: [{ role: "user", content: "What is the weather in Paris?" }],
  });
  return {
    stop_reason: final.stop_reason,
    uses: final.content.filter((b) => b.type === "tool_use"),
    partial: partial.join(""),
    input_tokens: counted.input_tokens,
  };
}

async function messagesError() {
  try {
    await anthropic.messages.create({
      model,
      max_tokens: 8,
      messages: [{ role: "user", content: [{ type: "image", source: { type: "url", url: "x" } }] }],
    });
    return { raised: null };
  } catch (error) {
    return { raised: error.constructor.name, status: error.status, type: error.error?.error?.type };
  }
}

const results = {
  responses: await responsesStream(),
  chat_tools: await chatToolStream(),
  messages: await messagesStream(),
  messages_tools: await messagesToolStream(),
  messages_error: await messagesError(),
};
console.log(JSON.stringify(results));
