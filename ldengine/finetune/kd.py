"""``ldengine finetune --method kd``: the knowledge-distillation baseline, the student taught the
expert's moves as text, with its learning curve (``KDCurve``)."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ldengine.contracts import task_evader
from ldengine.errors import LDEngineError
from ldengine.finetune.config import _header, _save, FinetuneConfig
from ldengine.functionbase import FunctionBase
from ldengine.models import load_student
from ldengine.registry import Registry

if TYPE_CHECKING:
    from ldengine.models import TransformersStudent


KD_TRAIN_GAMES = 221   # the paper's KD data set: expert rollouts from 221 seeded random starts


def finetune_kd(registry: Registry, cfg: FinetuneConfig, progress: bool = True, log=print,
                eval_every: int | None = None, patience: int | None = None) -> dict:
    """Knowledge distillation: LoRA on the expert's moves (one example per piece and
    step of seeded expert games); held-out move accuracy before and after; saves
    adapter and manifest. The task plugin provides the data (``task.kd``).

    With ``eval_every`` it draws a learning curve: held-out move accuracy every
    ``eval_every`` steps, each point a checkpoint in ``cfg.out`` (adapter, optimizer,
    ``curve.json``, ``curve.png``, ``curve.md``) that a later run with the same
    settings continues from; ``patience`` stops at the plateau, when that many points
    in a row bring no new best (by at least one held-out move).
    """
    start = time.perf_counter()
    task = registry.task(cfg.task)
    kd = task.kd
    if kd is None:
        raise LDEngineError(f"task {cfg.task!r} offers no knowledge-distillation data (--method kd)")
    if eval_every and not cfg.out:
        raise LDEngineError("a learning curve (--eval-every) needs --out, the folder its checkpoints go to")
    base = FunctionBase.build(cfg.task, registry.modules_for(cfg.task))
    evader = registry.policy(task_evader(task))        # the task's own evader (None without one)
    train = kd.move_examples(task, base, evader, cfg.train_seeds)
    held = kd.move_examples(task, base, evader, cfg.heldout_seeds)
    log(f"data: {len(train)} training moves from {len(cfg.train_seeds)} expert games, "
        f"{len(held)} held-out moves from {len(cfg.heldout_seeds)}")
    digest = hashlib.sha256(json.dumps([(e.question, e.answer) for e in train]).encode()).hexdigest()
    curve = KDCurve(Path(cfg.out), cfg, digest) if eval_every and cfg.out else None
    student = load_student(cfg.student, device=cfg.device)
    if curve is not None and curve.resume(student):
        before = curve.points[0]
        log(f"continuing the learning curve in {cfg.out} from step {curve.step} "
            f"(held-out move accuracy {curve.points[-1]['move_accuracy']:.3f})")
    else:
        before = kd.move_accuracy(student, task.rules, held)
        if curve:
            curve.add(0, before, None)
    log(f"held-out move accuracy before training: {before['move_accuracy']:.3f} "
        f"(legal answers {before['legal_answer_rate']:.3f})")
    prefix = kd.rules_prefix(task.rules)
    examples = [(prefix, e.question, e.answer) for e in train]

    def train_to(steps: int, first: int = 0, state: dict | None = None) -> dict:
        return student.train_lora_text(examples, steps=steps, lr=cfg.lr, batch_size=cfg.batch_size, rank=cfg.rank,
                                       seed=cfg.seed, progress=progress, top_layers=cfg.top_layers,
                                       modules=list(cfg.lora_modules), start_step=first, optimizer_state=state)

    if curve is None or not eval_every:
        metrics = train_to(cfg.steps)
    else:
        metrics = {}
        while curve.step < cfg.steps and not curve.plateau(patience):
            target = min(curve.step + eval_every, cfg.steps)
            metrics = train_to(target, curve.step, curve.optimizer_state)
            point = kd.move_accuracy(student, task.rules, held)
            curve.add(target, point, metrics, student)
            log(f"step {target}: held-out move accuracy {point['move_accuracy']:.3f} "
                f"(legal answers {point['legal_answer_rate']:.3f}), loss {metrics['final_loss']:.3f}, "
                f"{metrics['examples_per_second']} examples/s")
        if curve.plateau(patience):
            log(f"plateau: no new best in the last {patience} points; stopped at step {curve.step}")
        metrics = curve.metrics(metrics)
    kept = curve.kept if curve else None
    if curve and kept and kept["step"] != curve.step:   # the adapter saved is the best point's, not the last
        log(f"keeping the best point's adapter (step {kept['step']}, {kept['move_accuracy']:.3f}), "
            f"not the last one's (step {curve.step}, {curve.points[-1]['move_accuracy']:.3f})")
        student = load_student(cfg.student, adapter=curve.folder / "best", device=cfg.device)
    after = kd.move_accuracy(student, task.rules, held) if kept is None else kept
    log(f"held-out move accuracy after {after.get('step', cfg.steps)} steps: {after['move_accuracy']:.3f} "
        f"(legal answers {after['legal_answer_rate']:.3f})")
    manifest = {
        **_header(cfg, student, base, "kd"), "data_sha256": digest,
        "train_games": len(cfg.train_seeds), "train_examples": len(train), "heldout_examples": len(held),
        "heldout_move_accuracy_before": round(before["move_accuracy"], 4),
        "heldout_legal_answer_rate_before": round(before["legal_answer_rate"], 4),
        "heldout_move_accuracy": round(after["move_accuracy"], 4),
        "heldout_legal_answer_rate": round(after["legal_answer_rate"], 4),
    }
    if curve:
        manifest["examples_seen"] = curve.step * cfg.batch_size
        manifest["adapter_step"] = after["step"]
        manifest["learning_curve"] = [{k: p[k] for k in ("step", "move_accuracy", "legal_answer_rate")}
                                      for p in curve.points]
    return _save(cfg, student, base, manifest, metrics, start, "kd")


class KDCurve:
    """The KD learning curve's points and checkpoint in one folder: ``curve.json`` (the
    settings it belongs to and every point), ``checkpoint/`` (the adapter and the
    optimizer after the last point), ``best/`` (the adapter of the best point so far),
    ``curve.png`` and ``curve.md``. Each point is
    written whole before it counts, so an interrupted run loses at most the steps
    since the last point."""

    def __init__(self, folder: Path, cfg: FinetuneConfig, data_sha256: str):
        self.folder, self.step = folder, 0
        self.points: list[dict] = []
        self.optimizer_state: dict | None = None
        self.settings = {"task": cfg.task, "data_sha256": data_sha256, "batch_size": cfg.batch_size, "lr": cfg.lr,
                         "rank": cfg.rank, "top_layers": cfg.top_layers, "seed": cfg.seed,
                         "heldout_seeds": [cfg.heldout_seeds[0], cfg.heldout_seeds[-1]]}
        self.seconds = 0.0

    def resume(self, student: TransformersStudent) -> bool:
        """Load the checkpoint when the folder holds one of these settings (refused if it
        holds another run's)."""
        import torch
        path = self.folder / "curve.json"
        if not path.is_file():
            return False
        saved = json.loads(path.read_text())
        if saved.get("settings") != self.settings:
            differ = sorted(k for k in self.settings if saved.get("settings", {}).get(k) != self.settings[k])
            raise LDEngineError(f"{self.folder} holds a learning curve of other settings ({', '.join(differ)} "
                                f"differ); give another --out, or the same settings to continue it")
        self.points, self.step = saved["points"], saved["points"][-1]["step"]
        self.seconds = saved.get("training_seconds", 0.0)
        if self.step:
            student.load_adapter(self.folder / "checkpoint")
            self.optimizer_state = torch.load(self.folder / "checkpoint" / "optimizer.pt", weights_only=True)
        return True

    def plateau(self, patience: int | None) -> bool:
        if not patience or len(self.points) <= patience:
            return False
        best_before = max(p["move_accuracy"] for p in self.points[:-patience])
        one_move = 1 / max(self.points[-1]["heldout_moves"], 1)
        return max(p["move_accuracy"] for p in self.points[-patience:]) < best_before + one_move - 1e-9

    @property
    def best(self) -> dict:
        """The first point of the highest held-out move accuracy (step 0 before training)."""
        return max(self.points, key=lambda p: (p["move_accuracy"], -p["step"]))

    @property
    def kept(self) -> dict:
        """The point whose adapter the run saves: the best trained one (``best/``), or the
        last when training never beat the untrained student."""
        return self.best if self.best["step"] and (self.folder / "best").is_dir() else self.points[-1]

    def add(self, step: int, accuracy: dict, metrics: dict | None, student: Any = None) -> None:
        import torch
        new_best = bool(self.points) and round(accuracy["move_accuracy"], 4) > self.best["move_accuracy"]
        point = {"step": step, "move_accuracy": round(accuracy["move_accuracy"], 4),
                 "legal_answer_rate": round(accuracy["legal_answer_rate"], 4),
                 "heldout_moves": accuracy["moves"],
                 "loss": round(metrics["final_loss"], 4) if metrics else None,
                 "examples_per_second": metrics["examples_per_second"] if metrics else None}
        self.folder.mkdir(parents=True, exist_ok=True)
        if metrics:
            self.seconds += metrics["seconds"]
            checkpoint = self.folder / "checkpoint"
            student.save_adapter(checkpoint, {"method": "kd", "checkpoint_step": step})
            torch.save(metrics["optimizer_state"], checkpoint / "optimizer.pt.tmp")
            (checkpoint / "optimizer.pt.tmp").replace(checkpoint / "optimizer.pt")
            self.optimizer_state = metrics["optimizer_state"]
            if new_best:
                student.save_adapter(self.folder / "best", {"method": "kd", "checkpoint_step": step,
                                                            "move_accuracy": point["move_accuracy"]})
        self.points.append(point)
        self.step = step
        record = {"settings": self.settings, "points": self.points, "training_seconds": round(self.seconds, 1)}
        tmp = self.folder / "curve.json.tmp"
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        tmp.replace(self.folder / "curve.json")
        self._table()
        self._figure()

    def metrics(self, last: dict) -> dict:
        """The training figures of the whole curve (the last piece's examples/s)."""
        return {"steps": self.step, "batch_size": self.settings["batch_size"], "seconds": self.seconds,
                "final_loss": self.points[-1]["loss"],
                "examples_per_second": last.get("examples_per_second", self.points[-1]["examples_per_second"])}

    def _table(self) -> None:
        rows = ["| step | examples seen | held-out move accuracy | legal answers | training loss |",
                "|---|---|---|---|---|"]
        for p in self.points:
            loss = "" if p["loss"] is None else f"{p['loss']:.3f}"
            rows.append(f"| {p['step']} | {p['step'] * self.settings['batch_size']:,} | {p['move_accuracy']:.3f} | "
                        f"{p['legal_answer_rate']:.3f} | {loss} |")
        (self.folder / "curve.md").write_text("\n".join(rows) + "\n")

    def _figure(self) -> None:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        steps = [p["step"] for p in self.points]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(steps, [p["move_accuracy"] for p in self.points], marker="o", label="the expert's cell")
        ax.plot(steps, [p["legal_answer_rate"] for p in self.points], marker=".", linestyle="--",
                label="a legal cell")
        ax.set_xlabel(f"training steps (batches of {self.settings['batch_size']} moves)")
        ax.set_ylabel("share of held-out moves")
        ax.set_ylim(0, 1)
        ax.set_title(f"KD learning curve ({self.settings['task']})")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
        fig.savefig(self.folder / "curve.png", dpi=120, bbox_inches="tight")
        plt.close(fig)
