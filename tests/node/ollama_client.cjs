// The `ollama` npm package against a running server: chat, a streamed chat, generate, a JSON
// schema format, embed. Run with: node ollama_client.cjs HOST MODEL (after `npm ci` here).
// It prints one JSON object with what each call returned; the Python test asserts on it.
"use strict";

const { Ollama } = require("ollama");

const [host, model] = process.argv.slice(2);

async function main() {
  const ollama = new Ollama({ host });
  const options = { temperature: 0, num_predict: 12 };
  const ask = [{ role: "user", content: "Say hello." }];

  const chat = await ollama.chat({ model, messages: ask, options });

  const parts = [];
  for await (const part of await ollama.chat({ model, messages: ask, options, stream: true })) {
    parts.push({ content: part.message.content, done: part.done });
  }

  const generate = await ollama.generate({ model, prompt: "The sky is", options });

  const schema = {
    type: "object",
    properties: { colour: { type: "string", enum: ["blue", "red", "green"] } },
    required: ["colour"],
  };
  const structured = await ollama.chat({
    model,
    messages: [{ role: "user", content: "What colour is the sky? Answer in JSON." }],
    format: schema,
    options: { temperature: 0, num_predict: 24 },
  });

  const embed = await ollama.embed({ model, input: ["The cat sat.", "A dog ran."] });

  process.stdout.write(
    JSON.stringify({
      chat: { role: chat.message.role, content: chat.message.content, done: chat.done },
      stream: parts,
      generate: { response: generate.response, done_reason: generate.done_reason },
      structured: structured.message.content,
      embed: embed.embeddings,
    }),
  );
}

main().catch((error) => {
  process.stderr.write(`${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
});
