"""The conversation with the teacher: ask, check, ask for a repair, up to ``rounds``
answers; store the first module that passes, with its provenance."""
from __future__ import annotations

import time
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ldengine.distill.check import MODULE_FILE, Round, check_answer, sha256
from ldengine.distill.prompt import build_prompt, repair_message, task_rules
from ldengine.distill.store import Distilled, store
from ldengine.errors import LDEngineError
from ldengine.teacher import DEFAULT_KEY_ENV, ChatClient, TeacherError
from ldengine.version import __version__

if TYPE_CHECKING:
    from ldengine.registry import Registry


@dataclass
class DistillConfig:
    """What ``ldengine distill`` was asked: the task, the teacher, and how hard to try."""
    task: str
    url: str
    model: str
    key_env: str = DEFAULT_KEY_ENV
    rules_file: str | None = None
    rounds: int = 3
    games: int = 5              # seeded games the expert plays on the new base
    max_tokens: int = 8192
    timeout_s: float = 600.0


class DistillError(LDEngineError):
    """No answer passed the checks; nothing was stored."""


def distill(registry: Registry, cfg: DistillConfig, log: Callable[[str], None] = print) -> Distilled:
    """Ask, check, repair up to ``cfg.rounds`` times; store the first module that passes."""
    task = registry.task(cfg.task)
    rules, rules_source = task_rules(task, cfg.rules_file)
    client = ChatClient(cfg.url, cfg.model, cfg.key_env, timeout_s=cfg.timeout_s)
    prompt = build_prompt(registry, task, rules)
    messages = [{"role": "user", "content": prompt}]
    rounds: list[Round] = []
    for number in range(1, cfg.rounds + 1):
        log(f"round {number}/{cfg.rounds}: asking {cfg.model} at {public_url(cfg.url)}")
        answer = _ask(client, messages, cfg.max_tokens)
        done = check_answer(registry, task, answer, number, messages[-1]["content"], cfg.games)
        rounds.append(done)
        log("\n".join("  " + c.line().replace("\n", "\n  ") for c in done.checks))
        if done.passed:
            result = store(task.name, done, _provenance(cfg, prompt, rules, rules_source, rounds))
            result.rounds = rounds
            return result
        messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": repair_message(done)}]
    raise DistillError(failure_report(rounds))


def _ask(client: ChatClient, messages: list[dict], max_tokens: int) -> str:
    try:
        return client.converse(messages, max_tokens)
    except TeacherError as exc:
        raise DistillError(f"{exc}; nothing stored") from None


def failure_report(rounds: list[Round]) -> str:
    """What the last answer failed, for the user (nothing was stored)."""
    last = rounds[-1]
    details = "; ".join(f"{c.name}: {c.details[0] if c.details else 'failed'}" for c in last.checks if not c.passed)
    return (f"no function base passed the checks in {len(rounds)} round(s); nothing stored. "
            f"Last answer failed {', '.join(last.failed)} ({details})")


def _provenance(cfg: DistillConfig, prompt: str, rules: str, rules_source: str, rounds: list[Round]) -> dict:
    final = rounds[-1]
    source, base = final.module()
    games = next((c.figures for c in final.checks if c.name == "games"), {})
    return {"task": cfg.task, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "engine_version": __version__,
            "teacher": {"url": public_url(cfg.url), "model": cfg.model, "key_env": cfg.key_env,
                        "max_tokens": cfg.max_tokens},
            "prompt_sha256": sha256(prompt), "rules": {"source": rules_source, "sha256": sha256(rules)},
            "rounds": len(rounds), "max_rounds": cfg.rounds, "round_results": [r.record() for r in rounds],
            "check_games": games,
            "modules": [{"file": MODULE_FILE, "sha256": sha256(source)}],
            "functions": [{"name": e.name, "stage": e.stage, "version": e.version}
                          for e in base.entries.values()]}


def public_url(url: str) -> str:
    """The URL without any user:password part (provenance and logs never hold credentials)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]))

