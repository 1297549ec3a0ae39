// Lists and reads the agent's resources and prompts with the official MCP TypeScript SDK,
// then prints one JSON document on stdout for the Python test to check.
// Usage: node resources_prompts.mjs MCP_URL [PROMPT_ARGS_JSON]
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const url = new URL(process.argv[2]);
const promptArgs = JSON.parse(process.argv[3] ?? "{}");
const client = new Client({ name: "tailnet-agent-ts-test", version: "1.0.0" });
await client.connect(new StreamableHTTPClientTransport(url));
const out = { server: client.getServerVersion(), resources: {}, prompts: {} };
for (const resource of (await client.listResources()).resources) {
  const read = await client.readResource({ uri: resource.uri });
  out.resources[resource.uri] = {
    name: resource.name,
    mimeType: read.contents[0].mimeType,
    data: JSON.parse(read.contents[0].text),
  };
}
for (const prompt of (await client.listPrompts()).prompts) {
  const got = await client.getPrompt({ name: prompt.name, arguments: promptArgs[prompt.name] ?? {} });
  out.prompts[prompt.name] = {
    title: prompt.title,
    arguments: (prompt.arguments ?? []).map((a) => ({ name: a.name, required: !!a.required })),
    text: got.messages.map((m) => m.content.text).join("\n"),
  };
}
await client.close();
process.stdout.write(JSON.stringify(out));
