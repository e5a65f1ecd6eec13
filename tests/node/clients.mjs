// The official openai-node client against a running Hearth: node clients.mjs BASE_URL MODEL.
// Each check uses the client's own stream helpers, which rebuild the final object from the
// events and throw on an event sequence they do not expect. Prints one JSON line of results.
import OpenAI from "openai";

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0 });

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

const results = { responses: await responsesStream(), chat_tools: await chatToolStream() };
console.log(JSON.stringify(results));
