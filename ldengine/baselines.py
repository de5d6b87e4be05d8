"""The paper's baselines that answer in text: the untuned student (S-LLM), the teacher
behind an endpoint (L-LLM) and knowledge distillation (KD).

No function base, retriever or sandbox: each step the model reads the rules and a
question and writes its answer, which is parsed. What to ask and how to read the
answer is the task's (``task.text``, a text protocol): ``prefix(rules)``,
``question(state)``, ``max_new_tokens``, ``stop(text)``, ``judge(state, answer) ->
(action, counts)``; for KD, ``kd_questions(state)``, ``kd_max_new_tokens``,
``kd_stop(text)`` and ``kd_action(state, answers) -> (action, counts)``. ``counts``
name what went wrong (e.g. unparseable answers), summed in the agent's stats.
"""
from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol

from ldengine.contracts import Student, TaskBase
from ldengine.adapters import find_adapter
from ldengine.cache import LRU
from ldengine.errors import LDEngineError
from ldengine.ld import model_setup
from ldengine.models.base import dtype_identity
from ldengine.teacher import DEFAULT_KEY_ENV, ChatClient

if TYPE_CHECKING:
    from ldengine.agents import AgentContext


class TextProtocol(Protocol):
    """A task's text protocol (``task.text``), as the module's docstring describes it: what the
    text agents ask and how their answers are read (``counts``: what went wrong, by name)."""

    @property
    def max_new_tokens(self) -> int: ...

    @property
    def kd_max_new_tokens(self) -> int: ...

    def prefix(self, rules: str) -> str: ...

    def question(self, state: dict) -> str: ...

    def stop(self, text: str) -> bool: ...

    def judge(self, state: dict, answer: str) -> tuple[object, Mapping[str, int]]: ...

    def kd_questions(self, state: dict) -> list[str]: ...

    def kd_stop(self, text: str) -> bool: ...

    def kd_action(self, state: dict, answers: list[str]) -> tuple[object, Mapping[str, int]]: ...


class UsingStudent(Student, Protocol):
    """A student that counts its use (``model_calls``, ``tokens``), as the built-in backends do."""

    @property
    def usage(self) -> Mapping[str, float]: ...


def text_protocol(task: TaskBase, agent: str) -> TextProtocol:
    protocol = task.text
    if protocol is None:
        raise LDEngineError(f"the {agent} agent needs a text protocol, which task {task.name!r} does not offer")
    return protocol


def student_identity(student: Student) -> dict:
    """What pins a student's answers: its model file, adapter and (when not float32) weight type."""
    return {"model": student.name, "model_sha256": student.model_hash, "adapter_hash": student.adapter_hash,
            **dtype_identity(student)}


class Memo:
    """Greedy answers are deterministic, so a question asked before is answered from here
    without running the model (usage then counts only the generations actually run)."""

    def __init__(self, student: Student, size: int = 4096):
        self.student, self.known, self.hits = student, LRU(size), 0

    def answers(self, questions: list[str], prefix: str, max_new_tokens: int,
                stop: Callable[[str], bool] | None) -> list[str]:
        found = {q: self.known.get(q) for q in questions if q in self.known}
        new = list(dict.fromkeys(q for q in questions if q not in found))
        written = self.student.generate_batch(new, prefix=prefix, max_new_tokens=max_new_tokens, stop=stop) \
            if new else []
        for q, text in zip(new, written):
            self.known.put(q, text)
            found[q] = text
        self.hits += len(questions) - len(new)
        return [found[q] for q in questions]


class TextBaseline:
    """What the student and the teacher baselines share: the same questions, the answers
    judged the same way, and the counts of what went wrong in them."""

    name: str

    def __init__(self, task: TaskBase, student: Any):     # None: the teacher's
        self.task, self.student, self.text = task, student, text_protocol(task, self.name)
        self.last_functions: list[str] = []
        self.counts: Counter = Counter()
        self.last_answer = ""
        self.memo = Memo(student)

    def _judge(self, state: dict, answer: str) -> object:
        action, counts = self.text.judge(state, answer)
        self.counts["steps"] += 1
        self.counts.update(counts)
        return action

    def stats(self) -> dict:
        return {"steps_answered": self.counts["steps"], "memo_hits": self.memo.hits,
                **{k: v for k, v in self.counts.items() if k != "steps"}}


class StudentBaseline(TextBaseline):
    """Untuned student, text in and text out (the paper's S-LLM).

    ``act_batch`` answers several games' steps in one batched generation; the
    rules are a cached prefix, an answer stops once the protocol has read enough,
    and a question asked before is answered from a memo.
    """

    name = "student"
    setup: dict | None = None   # what a run names in its header (``student_agent`` sets it)

    def act(self, state: dict) -> object:
        return self.act_batch([state])[0]

    def act_batch(self, states: list[dict]) -> list[object]:
        answers = self.memo.answers([self.text.question(s) for s in states], self.text.prefix(self.task.rules),
                                    self.text.max_new_tokens, self.text.stop)
        self.last_answer = answers[-1]
        return [self._judge(state, answer) for state, answer in zip(states, answers)]

    def usage(self) -> dict:
        return dict(self.student.usage)

    def identity(self) -> dict:
        return student_identity(self.student)


class TeacherBaseline(TextBaseline):
    """The paper's L-LLM: a large model behind an OpenAI-compatible endpoint, asked
    exactly what the ``student`` agent is asked, its answer parsed the same way. It has
    no ``act_batch``: one request per step, as endpoints batch on their side."""

    name = "teacher"

    def __init__(self, task: TaskBase, client: ChatClient):
        super().__init__(task, student=None)
        self.client = client

    def act(self, state: dict) -> object:
        answer = self.client.chat(self.text.prefix(self.task.rules) + self.text.question(state),
                                  max_tokens=self.text.max_new_tokens)
        self.last_answer = answer
        return self._judge(state, answer)

    def usage(self) -> dict:
        return {"model_calls": self.client.calls, "tokens": self.client.tokens}

    def identity(self) -> dict:
        return {"teacher_url": self.client.url, "teacher_model": self.client.model}


class KDAgent:
    """Plays with a KD adapter: short generations (one per question the protocol asks,
    e.g. one per piece), all of a step's (and, through ``act_batch``, several
    games') questions in one batch.

    A memo answers a question seen before without running the model (a KD student
    that stops chasing meets the same positions step after step until the 100th).
    """

    name = "kd"
    setup: dict | None = None   # what a run names in its header (``kd_agent`` sets it)

    def __init__(self, task: TaskBase, student: UsingStudent, memo_size: int = 4096):
        self.task, self.student, self.text = task, student, text_protocol(task, self.name)
        self.last_functions: list[str] = []
        self.counts: Counter = Counter()
        self.memo = Memo(student, memo_size)

    def act(self, state: dict) -> object:
        return self.act_batch([state])[0]

    def act_batch(self, states: list[dict]) -> list[object]:
        asked = [self.text.kd_questions(s) for s in states]
        answers = iter(self.memo.answers([q for qs in asked for q in qs], self.text.prefix(self.task.rules),
                                         self.text.kd_max_new_tokens, self.text.kd_stop))
        actions = []
        for state, qs in zip(states, asked):
            action, counts = self.text.kd_action(state, [next(answers) for _ in qs])
            self.counts.update(counts)
            actions.append(action)
        return actions

    def usage(self) -> dict:
        return dict(self.student.usage)

    def identity(self) -> dict:
        return student_identity(self.student)

    def stats(self) -> dict:
        return {**self.counts, "memo_hits": self.memo.hits}


def student_agent(context: AgentContext) -> StudentBaseline:
    """The untuned default student (or ``--student PATH``), no adapter."""
    text_protocol(context.task, "student")
    if context.options.get("adapter"):
        raise LDEngineError("the student baseline is the untuned model: --adapter does not apply")
    agent = StudentBaseline(context.task, context.load_student())
    agent.setup = model_setup(agent.student, None)
    return agent


def teacher_agent(context: AgentContext) -> TeacherBaseline:
    """The teacher endpoint named by the ``teacher_url``/``teacher_model`` options."""

    text_protocol(context.task, "teacher")
    opts = context.options
    if not opts.get("teacher_url"):
        raise LDEngineError("no teacher endpoint: pass --teacher-url and --teacher-model "
                            "(an OpenAI-compatible chat API; key from $" + DEFAULT_KEY_ENV + ")")
    client = ChatClient(opts["teacher_url"], opts.get("teacher_model") or "",
                        opts.get("teacher_key_env") or DEFAULT_KEY_ENV)
    return TeacherBaseline(context.task, client)


def kd_agent(context: AgentContext) -> KDAgent:
    """The student with the committed KD adapter of the task (or ``--adapter DIR``)."""
    text_protocol(context.task, "kd")
    adapter = context.options.get("adapter") or find_adapter(context.task, context.base, method="kd")
    agent = KDAgent(context.task, context.load_student(adapter=adapter))
    agent.setup = model_setup(agent.student, adapter)
    return agent
