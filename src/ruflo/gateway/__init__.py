"""The gateway: the only road from ruflo to a model (one OpenAI-compatible endpoint, metered,
budgeted, with a kill switch). Importing this package is cheap; the client, the budgets and the
ScriptedGateway live in their own modules (`client`, `budget`, `scripted`) and load on demand.
"""

from ruflo.gateway.base import (
    CallContext,
    ChatMessage,
    ChatResult,
    Gateway,
    ModelInfo,
    StreamDelta,
    ToolCall,
    Usage,
)

__all__ = ["CallContext", "ChatMessage", "ChatResult", "Gateway", "ModelInfo", "StreamDelta",
           "ToolCall", "Usage"]
