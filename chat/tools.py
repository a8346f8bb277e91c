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
# int.__round__ with ndigits=-n computes 10**n first: unbounded, round(1, -20000000) held the
# GIL for 26 s. MAX_RESULT_BITS is about 3,010 digits, so this still rounds any number away.
MAX_ROUND_DIGITS = 3100

# A tool runs in a thread that its timeout cannot stop, and one big-integer operation holds the
# GIL until it ends, freezing every stream on the worker. So each operation's cost is bounded
# from its operands *before* it runs: every integer stays under MAX_RESULT_BITS (an operation on
# such numbers takes microseconds), and the few operations whose cost is not set by the size of
# their operands (exponents, factorials, round's ndigits) get a bound of their own.


def _bits(value: Any) -> int:
    """The size that sets an integer operation's cost; floats cost the same whatever they hold."""
    return abs(value).bit_length() if isinstance(value, int) else 0


def _check_binary(op: ast.operator, left: Any, right: Any) -> None:
    """Refuse a binary operation whose result could exceed MAX_RESULT_BITS, before running it."""
    if isinstance(op, ast.Pow):
        if abs(right) > MAX_EXPONENT:
            raise ToolError("Result too large.")
        if isinstance(right, int) and right * max(1, _bits(left)) > MAX_RESULT_BITS:
            raise ToolError("Result too large.")
    elif isinstance(op, ast.Mult) and _bits(left) + _bits(right) > MAX_RESULT_BITS:
        raise ToolError("Result too large.")
    elif isinstance(op, (ast.Add, ast.Sub)) and max(_bits(left), _bits(right)) >= MAX_RESULT_BITS:
        raise ToolError("Result too large.")
    # Division and modulo give results no larger than their left operand.


def _check_call(name: str, args: list[Any]) -> None:
    """Refuse a function call whose cost is not bounded by the size of its arguments."""
    if name == "factorial" and args:
        if not isinstance(args[0], int):
            raise ToolError("factorial() needs a whole number.")
        if args[0] > MAX_FACTORIAL:
            raise ToolError("Number too large for factorial.")
    if name == "round" and len(args) == 2:
        if not isinstance(args[1], int):
            raise ToolError("round() needs a whole number of digits.")
        if abs(args[1]) > MAX_ROUND_DIGITS:
            raise ToolError(f"round() takes at most {MAX_ROUND_DIGITS} digits either way.")


def _checked(value: Any) -> Any:
    """Every value the evaluator produces is a real number of bounded size."""
    if isinstance(value, complex):
        raise ToolError("The result is not a real number.")
    if _bits(value) > MAX_RESULT_BITS:
        raise ToolError("Result too large.")
    return value


def _evaluate(node: ast.AST) -> Any:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _checked(node.value)
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        _check_binary(node.op, left, right)
        return _checked(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        args = [_evaluate(arg) for arg in node.args]
        _check_call(node.func.id, args)
        return _checked(_FUNCTIONS[node.func.id](*args))
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
    except OverflowError:
        raise ToolError("Result too large.") from None
    except (ValueError, TypeError) as exc:
        raise ToolError(f"Cannot compute: {exc}.") from None
