"""The fusion encoder's curriculum: which tasks, with which weights and context dropout, at each step.

Single-modality tasks first (ITC, MLM without the image, MIM without the caption), then every joint task;
phases are data, so a recipe states its own schedule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from polymodal.config import ConfigError
from polymodal.modules.fusion_losses import ITM_NEGATIVES, TASKS, check_modality_dropout


@dataclass
class CurriculumPhase:
    until_step: int | None = None  # the phase covers steps below this one; None = to the end (last phase)
    tasks: dict[str, float] = field(default_factory=dict)  # task (one of TASKS) -> loss weight
    modality_dropout: dict[str, float] = field(default_factory=dict)  # context modality -> drop probability
    itm_negatives: str = "hard"  # hard: itc-mined + contradicting captions (ALBEF) | easy: uniform in-batch

    def validate(self) -> None:
        """Raise :class:`ConfigError` for unknown tasks or modalities, or out-of-range numbers."""
        unknown = sorted(set(self.tasks) - set(TASKS))
        if unknown:
            raise ConfigError(f"CurriculumPhase: unknown task {unknown[0]!r}; tasks are {TASKS}")
        if not any(w > 0 for w in self.tasks.values()) or any(w < 0 for w in self.tasks.values()):
            raise ConfigError(f"CurriculumPhase: tasks need weights >= 0, at least one > 0; got {self.tasks}")
        if self.until_step is not None and self.until_step < 1:
            raise ConfigError(f"CurriculumPhase: until_step must be >= 1 or None, got {self.until_step}")
        if self.itm_negatives not in ITM_NEGATIVES:
            raise ConfigError(
                f"CurriculumPhase: itm_negatives must be one of {ITM_NEGATIVES}, got {self.itm_negatives!r}"
            )
        try:
            check_modality_dropout(self.modality_dropout)
        except ValueError as e:
            raise ConfigError(f"CurriculumPhase: {e}") from None


def _default_phases() -> list[CurriculumPhase]:
    # align the towers and learn each modality alone (MLM without the image, MIM without the caption),
    # then train every joint task with light context dropout
    unimodal = CurriculumPhase(300, {"itc": 1.0, "mlm": 1.0, "mim": 1.0}, {"image": 1.0, "text": 1.0})
    joint = {"itc": 1.0, "itm": 1.0, "mlm": 1.0, "mim": 0.5, "vqa": 1.0}
    return [unimodal, CurriculumPhase(None, joint, {"image": 0.1, "text": 0.1})]


@dataclass
class Curriculum:
    phases: list[CurriculumPhase] = field(default_factory=_default_phases)  # in step order

    def validate(self) -> None:
        """Phases must exist, end at increasing steps, and only the last may be open-ended."""
        if not self.phases:
            raise ConfigError("Curriculum: phases must not be empty")
        ends = [p.until_step for p in self.phases]
        if None in ends[:-1]:
            raise ConfigError(f"Curriculum: only the last phase may have until_step None, got {ends}")
        bounded = [e for e in ends if e is not None]
        if any(b <= a for a, b in zip(bounded, bounded[1:], strict=False)):
            raise ConfigError(f"Curriculum: until_step must increase from phase to phase, got {ends}")
        for phase in self.phases:
            phase.validate()

    def phase(self, step: int) -> CurriculumPhase:
        """The phase in force at ``step`` (0-based); past the last bound, the last phase holds."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        for phase in self.phases:
            if phase.until_step is None or step < phase.until_step:
                return phase
        return self.phases[-1]

    def weights(self, step: int) -> dict[str, float]:
        """Task weights at ``step`` (for :func:`multitask_loss`)."""
        return dict(self.phase(step).tasks)

    def modality_dropout(self, step: int) -> dict[str, float]:
        """Context-dropout probabilities at ``step`` (for :func:`multitask_loss`)."""
        return dict(self.phase(step).modality_dropout)
