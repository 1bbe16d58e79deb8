"""Anthropic's Messages API through the official SDK.

nightloop speaks OpenAI-style chat messages; this module converts them: system
messages go to ``system=``, assistant tool calls become ``tool_use`` blocks and
tool messages ``tool_result`` blocks (and back). Structured output is one forced
tool whose ``input_schema`` is the pydantic schema. The SDK (2.x) has no
temperature parameter any more, so ``request.temperature`` is not sent; nor is
``seed``, which the API never had.
"""

from __future__ import annotations

import json
import time
from typing import Any

import anthropic
from pydantic import BaseModel

from nightloop.llm import parse_structured, repair_instruction
from nightloop.llm.base import LLMRequest, LLMResponse
from nightloop.llm.common import SDKProvider, schema_name
from nightloop.models import Message, ToolCall, ToolFunction, Usage, canonical_json

__all__ = ["AnthropicProvider", "to_anthropic_messages", "to_anthropic_tools"]


class AnthropicProvider(SDKProvider):
    """The ``anthropic`` provider; retries, backoff (``retry-after``) and timeouts are the SDK's."""

    name = "anthropic"
    label = "Anthropic"
    key_env = "ANTHROPIC_API_KEY"
    base_url_env = "ANTHROPIC_BASE_URL"
    sdk = anthropic
    sdk_error = anthropic.AnthropicError
    answer_kind = "a message"
    expected_api = "the Anthropic API"

    def _new_sdk_client(self) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(**self._sdk_options())

    @staticmethod
    def _usage_of(reply: Any) -> Usage:
        usage = reply.usage
        cached_input = (usage.cache_creation_input_tokens or 0) + (usage.cache_read_input_tokens or 0)
        return Usage(input_tokens=usage.input_tokens + cached_input, output_tokens=usage.output_tokens)

    async def complete(self, request: LLMRequest) -> LLMResponse:
        system, turns = to_anthropic_messages(request.messages)
        tools = to_anthropic_tools(request.tools or [])
        schema = request.response_schema
        answer_tool = schema_name(schema) if schema is not None else None
        if schema is not None:
            tools.append(_answer_tool(schema))

        async def re_ask(bad: Any, problem: str) -> Any:
            ask = f"Call the {answer_tool} tool again with an input"
            repair = _repair_turns(bad, answer_tool, repair_instruction(schema, problem, ask=ask))
            return await self._create(request, system, turns + repair, tools, answer_tool)

        started = time.perf_counter()
        reply, parsed, usage = await self._with_one_repair(
            request,
            await self._create(request, system, turns, tools, answer_tool),
            lambda bad: _parse(schema, bad, answer_tool),
            re_ask,
        )
        usage.latency_ms = (time.perf_counter() - started) * 1000
        text = "".join(block.text for block in reply.content if block.type == "text")
        if parsed is not None and not text:
            text = parsed.model_dump_json()  # like OpenAI's structured answers, the text is the JSON
        calls = [
            ToolCall(id=block.id, function=ToolFunction(name=block.name, arguments=canonical_json(block.input)))
            for block in reply.content
            if block.type == "tool_use" and block.name != answer_tool
        ]
        return LLMResponse(
            text=text or None,
            parsed=parsed,
            tool_calls=calls or None,
            usage=usage,
            provider=self.name,
            model=reply.model or request.model,
        )

    async def _create(
        self,
        request: LLMRequest,
        system: str | None,
        turns: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        answer_tool: str | None,
    ) -> Any:
        client = self._client()
        params: dict[str, Any] = {"model": request.model, "max_tokens": request.max_tokens, "messages": turns}
        if system:
            params["system"] = system
        if tools:
            params["tools"] = tools
        if answer_tool:
            params["tool_choice"] = {"type": "tool", "name": answer_tool}
        with self._sdk_errors(request, client):
            reply = await client.messages.create(**params)
            blocks = reply.content  # an HTML page arrives as a str: AttributeError, translated above
            if not isinstance(blocks, list) or not all(hasattr(b, "type") for b in blocks):
                raise self.unreadable(request, client, f"'content' is {type(blocks).__name__}, not a list of blocks")
            self._usage_of(reply)
        return reply


def to_anthropic_messages(messages: list[Message]) -> tuple[str | None, list[dict[str, Any]]]:
    """``(system, turns)``: system text apart, tool traffic as content blocks, same-role turns merged."""
    system = "\n\n".join(m.text for m in messages if m.role == "system" and m.text) or None
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if not turns:  # the API needs one message; a request may carry all its text in the system prompt
        turns.append({"role": "user", "content": [{"type": "text", "text": "Begin."}]})
    return system, turns


def _blocks(message: Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [{"type": "tool_result", "tool_use_id": message.tool_call_id or "", "content": message.text}]
    blocks: list[dict[str, Any]] = [{"type": "text", "text": message.text}] if message.text else []
    for call in message.tool_calls or []:
        blocks.append({"type": "tool_use", "id": call.id, "name": call.function.name, "input": _arguments(call)})
    return blocks


def _arguments(call: ToolCall) -> dict[str, Any]:
    try:
        value = json.loads(call.function.arguments or "{}")
    except ValueError:
        return {"arguments": call.function.arguments}  # recorded arguments that were never valid JSON
    return value if isinstance(value, dict) else {"value": value}


def to_anthropic_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI function tools as Anthropic tools; tools already in Anthropic's shape pass through."""
    converted = []
    for tool in tools:
        if "input_schema" in tool:
            converted.append(tool)
            continue
        function = tool.get("function", tool)
        entry = {
            "name": function["name"],
            "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
        }
        if function.get("description"):
            entry["description"] = function["description"]
        converted.append(entry)
    return converted


def _answer_tool(schema: type[BaseModel]) -> dict[str, Any]:
    return {
        "name": schema_name(schema),
        "description": f"Give your answer as the input of this tool. {schema.__doc__ or ''}".strip(),
        "input_schema": schema.model_json_schema(),
    }


def _parse(schema: type[BaseModel], reply: Any, answer_tool: str | None) -> tuple[BaseModel | None, str]:
    for block in reply.content:
        if block.type == "tool_use" and block.name == answer_tool:
            return parse_structured(schema, block.input)
    text = "".join(block.text for block in reply.content if block.type == "text")
    if text.strip():
        parsed, problem = parse_structured(schema, text)
        if parsed is not None:
            return parsed, ""
        return None, f"the answer did not call the {answer_tool} tool and its text is not valid either ({problem})"
    return None, f"the answer did not call the {answer_tool} tool"


def _repair_turns(reply: Any, answer_tool: str | None, instruction: str) -> list[dict[str, Any]]:
    """The bad answer and the repair request, in a shape the API accepts (a tool_use needs its tool_result)."""
    tool_use = next((b for b in reply.content if b.type == "tool_use" and b.name == answer_tool), None)
    if tool_use is not None:
        use = {"type": "tool_use", "id": tool_use.id, "name": tool_use.name, "input": tool_use.input}
        result = {"type": "tool_result", "tool_use_id": tool_use.id, "is_error": True, "content": instruction}
        return [{"role": "assistant", "content": [use]}, {"role": "user", "content": [result]}]
    text = "".join(b.text for b in reply.content if b.type == "text")
    turns = [{"role": "assistant", "content": [{"type": "text", "text": text}]}] if text.strip() else []
    return turns + [{"role": "user", "content": [{"type": "text", "text": instruction}]}]

