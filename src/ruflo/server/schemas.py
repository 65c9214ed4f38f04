"""Request bodies (validated at the edge with pydantic) and the response shapes the OpenAPI
schema advertises. Chat shapes follow ruvocal's camelCase; hive shapes follow the core model.
Depends on pydantic and the core model.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from ruflo.model import AdapterKind, Mode

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
ModelName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Skill = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Ident = Annotated[str, StringConstraints(min_length=1, max_length=100)]


MAX_JSON_DEPTH = 32
"""How deeply free-form JSON (a hive's config, an agent's adapter_config) may nest."""
MAX_JSON_BYTES = 64_000
"""How big free-form JSON may be, written compactly as UTF-8."""
MAX_JSON_KEY = 200


def _holds_nul(data: dict[Any, Any]) -> bool:
    """Whether any text or key in parsed JSON holds a NUL: the quick look every body gets (only
    containers are stacked; `_nul_places` then finds where)."""
    stack: list[Any] = [data]
    while stack:
        value = stack.pop()
        items = value.items() if type(value) is dict else enumerate(value)
        for key, item in items:
            kind = type(item)
            if kind is str:
                if "\x00" in item:
                    return True
            elif kind is dict or kind is list:
                stack.append(item)
            if type(key) is str and "\x00" in key:
                return True
    return False


def _nul_places(data: Any) -> list[tuple[tuple[int | str, ...], Any]]:
    """Where a text value or key in parsed JSON holds a NUL character, walked without recursion
    (the body may nest deeper than Python's stack)."""
    found: list[tuple[tuple[int | str, ...], Any]] = []
    stack: list[tuple[tuple[int | str, ...], Any]] = [((), data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                found.append((where, value))
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and "\x00" in key:
                    found.append((where, key))
                stack.append(((*where, key), item))
        elif isinstance(value, list):
            stack.extend(((*where, index), item) for index, item in enumerate(value))
    return sorted(found, key=lambda place: [str(part) for part in place[0]])


class Body(BaseModel):
    """A request body: unknown fields are refused, so a typo is a 422, not silently ignored.
    No text in it may hold a NUL character: Postgres can't store one, and SQLite must refuse
    the same values, so every field says so alike before anything is stored."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        places = _nul_places(data) if type(data) is dict and _holds_nul(data) else []
        if places:
            raise ValidationError.from_exception_data(cls.__name__, [
                InitErrorDetails(type=PydanticCustomError(
                    "nul_character", "holds a NUL character (\\x00), which the store can't "
                    "hold; nothing was stored"), loc=where, input=value)
                for where, value in places[:20]])
        return data


def sound_json(value: dict[str, Any]) -> dict[str, Any]:
    """Free-form JSON the store and every answer can hold: nested at most MAX_JSON_DEPTH deep,
    keys at most MAX_JSON_KEY characters, finite numbers, at most MAX_JSON_BYTES written out."""
    stack: list[tuple[int, Any]] = [(1, value)]
    while stack:
        depth, item = stack.pop()
        if isinstance(item, (dict, list)) and depth > MAX_JSON_DEPTH:
            raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels; nothing was stored")
        if isinstance(item, dict):
            for key, inner in item.items():
                if len(key) > MAX_JSON_KEY:
                    raise ValueError(f"a key is {len(key)} characters long; at most "
                                     f"{MAX_JSON_KEY} are allowed; nothing was stored")
                stack.append((depth + 1, inner))
        elif isinstance(item, list):
            stack.extend((depth + 1, inner) for inner in item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError("holds a number that is not finite (NaN or Infinity), which JSON "
                             "can't carry; nothing was stored")
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    if size > MAX_JSON_BYTES:
        raise ValueError(f"is {size} bytes written as JSON; at most {MAX_JSON_BYTES} are "
                         "allowed; nothing was stored")
    return value


JSONObject = Annotated[dict[str, Any], AfterValidator(sound_json)]
"""Free-form JSON given by a caller, checked for shape and size before it is stored."""


# -- errors ------------------------------------------------------------------------------------

class ErrorBody(BaseModel):
    """Every 4xx/5xx answer has this shape."""

    message: str
    error: str
    details: list[dict[str, Any]] | None = None


# -- probes ------------------------------------------------------------------------------------

class FeatureFlags(BaseModel):
    enableAssistants: bool
    loginEnabled: bool
    isAdmin: bool
    transcriptionEnabled: bool


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    """"ready" when the store answers and takes writes; the gateway never decides readiness."""
    store: str
    gateway: dict[str, Any]


# -- chat --------------------------------------------------------------------------------------

class ModelEntry(BaseModel):
    id: str
    name: str
    displayName: str
    description: str = ""
    multimodal: bool = False
    supportsTools: bool = True
    unlisted: bool = False


class GatewayStatus(BaseModel):
    status: Literal["ok", "unconfigured", "refused", "budget", "rate_limited", "unreachable",
                    "bad_response", "timeout", "unknown"]
    message: str | None = None
    base_url: str | None = None


class RefreshAnswer(BaseModel):
    models: list[ModelEntry]
    gateway: GatewayStatus


class ConversationCreate(Body):
    model: ModelName | None = None
    """Defaults to the user's active model, then RUFLO_MODEL."""
    preprompt: Annotated[str, StringConstraints(max_length=20_000)] | None = None
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                            max_length=100)] | None = None


class ConversationCreated(BaseModel):
    conversationId: str


class ConversationPatch(Body):
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                            max_length=100)] | None = None
    model: ModelName | None = None

    @model_validator(mode="after")
    def _something(self) -> ConversationPatch:
        if self.title is None and self.model is None:
            raise ValueError("give a title or a model to change")
        return self


class ConversationItem(BaseModel):
    id: str
    title: str
    updatedAt: str
    model: str


class ConversationPage(BaseModel):
    conversations: list[ConversationItem]
    hasMore: bool


class MessageOut(BaseModel):
    id: str
    parentId: str | None
    from_: str = Field(alias="from")
    content: str
    createdAt: str
    updatedAt: str
    ancestors: list[str]
    children: list[str]
    interrupted: bool = False
    model_config = ConfigDict(populate_by_name=True, extra="allow")


class ConversationOut(BaseModel):
    id: str
    title: str
    model: str
    preprompt: str | None
    rootMessageId: str | None
    updatedAt: str
    createdAt: str
    messages: list[MessageOut]


MAX_ATTACHMENT_CHARS = 100_000
"""One attached file's text at most (the page refuses bigger files before sending)."""


class Attachment(Body):
    """A text or code file attached to a message: it goes into the message's context."""
    name: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    mime: Annotated[str, StringConstraints(max_length=100)] = "text/plain"
    content: Annotated[str, StringConstraints(max_length=MAX_ATTACHMENT_CHARS)]


class MessageCreate(Body):
    inputs: Annotated[str, StringConstraints(max_length=200_000)] | None = None
    """The user's text. Absent only with is_retry."""
    files: list[Attachment] = Field(default_factory=list, max_length=5)
    """Text files attached (at most 5 of MAX_ATTACHMENT_CHARS each)."""
    id: Annotated[str, StringConstraints(max_length=100)] | None = None
    """The message to answer under: a new user message becomes its child (an edit branches
    from the edited message's parent). With is_retry, the user message to answer again."""
    is_retry: bool = False

    @model_validator(mode="after")
    def _inputs_or_retry(self) -> MessageCreate:
        if self.is_retry:
            if not self.id:
                raise ValueError("is_retry needs id: the user message to answer again")
        elif self.inputs is None or not self.inputs.strip():
            raise ValueError("inputs must hold the message text")
        return self


class StopAnswer(BaseModel):
    stopped: bool


SettingKey = Annotated[str, StringConstraints(max_length=200)]
PromptText = Annotated[str, StringConstraints(max_length=20_000)]


class UserSettings(Body):
    activeModel: ModelName | None = None
    customPrompts: dict[SettingKey, PromptText] | None = Field(default=None, max_length=200)
    streamingMode: Literal["raw", "smooth"] | None = None
    hidePromptExamples: dict[SettingKey, bool] | None = Field(default=None, max_length=1_000)
    disableStream: bool | None = None
    directPaste: bool | None = None
    welcomeModalSeen: bool | None = None
    shareConversationsWithModelAuthors: bool | None = None
    multimodalOverrides: dict[SettingKey, bool] | None = Field(default=None, max_length=1_000)
    toolsOverrides: dict[SettingKey, bool] | None = Field(default=None, max_length=1_000)
    toolPolicies: dict[SettingKey, Literal["allow", "ask", "off"]] | None = Field(
        default=None, max_length=1_000)
    """Per chat tool (GET /api/v2/tools): allow runs at once, ask waits for the person, off is
    not offered."""


class McpServerSpec(Body):
    """An MCP server for a person's chats: a streamable HTTP `url` (with `headers`), or a stdio
    `command` (argv; run in the command sandbox, so defining one is an operator's right)."""
    name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
    url: Annotated[str, StringConstraints(pattern=r"^https?://", max_length=2_000)] | None = None
    headers: dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]{1,100}$")],
                  Annotated[str, StringConstraints(max_length=4_000)]] = Field(
        default_factory=dict, max_length=20)
    command: list[Annotated[str, StringConstraints(min_length=1, max_length=4_000)]] | None = \
        Field(default=None, min_length=1, max_length=100)
    env: dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,100}$")],
              Annotated[str, StringConstraints(max_length=4_000)]] = Field(
        default_factory=dict, max_length=50)

    @model_validator(mode="after")
    def _url_or_command(self) -> McpServerSpec:
        if (self.url is None) == (self.command is None):
            raise ValueError("give a url (streamable HTTP) or a command (stdio), not both")
        if self.url is None and self.headers:
            raise ValueError("headers go with a url")
        if self.command is None and self.env:
            raise ValueError("env goes with a command")
        return self


class ToolDecision(Body):
    decision: Literal["allow", "deny"]


class ToolDecisionAnswer(BaseModel):
    decided: bool


# -- hives -------------------------------------------------------------------------------------

class BudgetSpec(Body):
    max_tokens: int | None = Field(default=None, ge=0, le=10**12)
    max_cost: float | None = Field(default=None, ge=0, le=10**9)


class AgentSpec(Body):
    name: Name
    role: Name = "worker"
    title: Annotated[str, StringConstraints(max_length=200)] = ""
    capabilities: Annotated[str, StringConstraints(max_length=5_000)] = ""
    skills: list[Skill] = Field(default_factory=list, max_length=50)
    thresholds: dict[Skill, Annotated[float, Field(ge=0, le=1e6)]] = Field(default_factory=dict,
                                                                          max_length=200)
    model: ModelName | None = None
    reports_to: Name | None = None
    """The manager's name, in an org chart."""
    adapter: AdapterKind = AdapterKind.LLM
    adapter_config: JSONObject = Field(default_factory=dict)
    budget: BudgetSpec | None = None


class TaskSpec(Body):
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
    description: Annotated[str, StringConstraints(max_length=50_000)] = ""
    skills: list[Skill] = Field(default_factory=list, max_length=50)
    priority: int = Field(default=1, ge=0, le=1000)
    effort: float = Field(default=1.0, ge=0, le=1e6)
    depends_on: list[Ident] = Field(default_factory=list, max_length=200)
    verify: Annotated[str, StringConstraints(max_length=5_000)] | None = None
    parent_id: Ident | None = None


class HiveCreate(Body):
    objective: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                                max_length=50_000)]
    name: Name | None = None
    mode: Mode | None = None
    """Defaults to company when an org chart is given, else swarm."""
    agents: list[AgentSpec] | Annotated[int, Field(ge=1, le=500)] | None = None
    """Agent specs, or a count of alike generalists."""
    org: list[AgentSpec] | None = Field(default=None, max_length=500)
    """An org chart: agents with reports_to naming their manager; exactly one root."""
    model: ModelName | None = None
    """Model for agents that name none."""
    budget: BudgetSpec | None = None
    tasks: list[TaskSpec] = Field(default_factory=list, max_length=2_000)
    config: JSONObject = Field(default_factory=dict)
    isolation: Literal["git", "none"] | None = None
    """git: each attempt in its own worktree (the default; the workspace must be a repository
    unless the server makes it); none: the agents share the folder (engine/isolation.py)."""
    workspace: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None
    """An existing folder on the server, by absolute path (an operator's right); none: the
    server makes one under its workspace directory."""
    git_remote: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None
    """A git remote (URL or path the server can reach) the hive's integration branch lives on,
    so `ruflo worker` processes on other machines clone or fetch it and push their task
    branches (agents/gitremote.py): git isolation on a Postgres store; an operator's right."""

    @model_validator(mode="after")
    def _agents_or_org(self) -> HiveCreate:
        if self.agents is not None and self.org is not None:
            raise ValueError("give agents or org, not both")
        taken = sorted({"isolation", "start_commit", "git_remote"} & set(self.config))
        if taken:
            raise ValueError(f"config.{taken[0]} is set by ruflo when the hive starts: give "
                             "the `isolation` field instead")
        if isinstance(self.agents, list) and len(self.agents) > 500:
            raise ValueError("at most 500 agents")
        return self


class PauseBody(Body):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                             max_length=500)] = "paused by a person"


class ActionsBody(Body):
    actions: dict[str, Any]
    """An `actions:` block (agents/permissions.py parse_actions checks it)."""


class ApprovalDecision(Body):
    decision: Literal["approved", "rejected"]
    reason: Annotated[str | None, StringConstraints(strip_whitespace=True, min_length=1,
                                                    max_length=2000)] = None
    """Why: an agent whose action was rejected reads it as its tool error."""
