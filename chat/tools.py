"""Server-side tools the model may call (switched on by CHAT_TOOLS_ENABLED).

Each tool is a plain function with a JSON schema. A failing or unknown tool gives the model an
error result instead of breaking the reply.
"""

from __future__ import annotations

import ast
import asyncio
import json
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class ToolError(Exception):
    """A tool could not do what was asked; the message goes back to the model."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    function: Callable[..., Any]

    def schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


REGISTRY: dict[str, Tool] = {}
TOOL_TIMEOUT = 10.0


def tool(name: str, description: str, parameters: dict[str, Any]) -> Callable[..., Any]:
    def register(function: Callable[..., Any]) -> Callable[..., Any]:
        REGISTRY[name] = Tool(name, description, parameters, function)
        return function

    return register


def tool_schemas() -> list[dict[str, Any]]:
    return [t.schema() for t in REGISTRY.values()]


def run_tool(name: str, arguments: str) -> str:
    """Run a tool and return its result as text for the model; errors become `{"error": ...}`."""
    registered = REGISTRY.get(name)
    if registered is None:
        return json.dumps({"error": f"Unknown tool {name!r}."})
    try:
        parsed = json.loads(arguments) if arguments.strip() else {}
        if not isinstance(parsed, dict):
            raise ToolError("Arguments must be a JSON object.")
        return json.dumps({"result": registered.function(**parsed)}, ensure_ascii=False)
    except json.JSONDecodeError as exc:
        return json.dumps({"error": f"Arguments are not valid JSON: {exc.msg}."})
    except TypeError as exc:
        return json.dumps({"error": f"Bad arguments: {exc}."})
    except ToolError as exc:
        return json.dumps({"error": str(exc)})
    except Exception as exc:  # a broken tool must not break the reply
        return json.dumps({"error": f"The tool failed: {type(exc).__name__}."})


async def arun_tool(name: str, arguments: str) -> str:
    """`run_tool` in a thread, so a slow tool never stalls the streams on this worker."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(run_tool, name, arguments), TOOL_TIMEOUT)
    except TimeoutError:
        return json.dumps({"error": f"The tool took longer than {TOOL_TIMEOUT:g} seconds."})


# --- Tools -----------------------------------------------------------------------------------


@tool(
    "current_datetime",
    "The current date and time, in UTC or in an IANA time zone such as Europe/Paris.",
    {
        "type": "object",
        "properties": {"timezone": {"type": "string", "description": "IANA time zone name"}},
        "required": [],
    },
)
def current_datetime(timezone: str = "UTC") -> str:
    try:
        zone = ZoneInfo(timezone) if timezone and timezone != "UTC" else UTC
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolError(f"Unknown time zone {timezone!r}.") from None
    return datetime.now(zone).isoformat(timespec="seconds")


_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., float]] = {
    name: getattr(math, name)
    for name in [
        "sqrt",
        "sin",
        "cos",
        "tan",
        "asin",
        "acos",
        "atan",
        "log",
        "log10",
        "log2",
        "exp",
        "floor",
        "ceil",
        "fabs",
        "factorial",
        "radians",
        "degrees",
    ]
}
_FUNCTIONS.update({"abs": abs, "round": round, "min": min, "max": max})
_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}
MAX_EXPRESSION_LENGTH = 500
MAX_EXPONENT = 1000
MAX_RESULT_BITS = 10_000  # about 3,000 digits: exact, and quick to compute and print
MAX_FACTORIAL = 500


def _evaluate(node: ast.AST) -> Any:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and (
            abs(right) > MAX_EXPONENT
            or abs(right) * max(1, abs(int(left)).bit_length()) > MAX_RESULT_BITS
        ):
            raise ToolError("Result too large.")
        result = _BINARY[type(node.op)](left, right)
        if isinstance(result, int) and result.bit_length() > MAX_RESULT_BITS:
            raise ToolError("Result too large.")
        return result
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        args = [_evaluate(arg) for arg in node.args]
        if node.func.id == "factorial" and args and args[0] > MAX_FACTORIAL:
            raise ToolError("Number too large for factorial.")
        return _FUNCTIONS[node.func.id](*args)
    raise ToolError(f"Not allowed in an expression: {type(node).__name__}.")


@tool(
    "calculate",
    "Evaluate an arithmetic expression exactly: + - * / // % **, parentheses, pi, e, and "
    "functions such as sqrt, sin, cos, log, exp, floor, ceil, abs, round, min, max.",
    {
        "type": "object",
        "properties": {"expression": {"type": "string", "description": "e.g. (2 + 3) * sqrt(16)"}},
        "required": ["expression"],
    },
)
def calculate(expression: str) -> int | float:
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise ToolError("Expression too long.")
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval")
    except SyntaxError:
        raise ToolError(f"Not an arithmetic expression: {expression!r}.") from None
    try:
        return _evaluate(tree)  # type: ignore[no-any-return]
    except ZeroDivisionError:
        raise ToolError("Division by zero.") from None
    except (OverflowError, ValueError) as exc:
        raise ToolError(f"Cannot compute: {exc}.") from None
