"""SSL methods: lightly losses and heads on our backbones, and the registry of method names.

Each method is a small ``nn.Module`` holding the backbone plus whatever the method needs (heads,
a momentum teacher, prototypes); ``loss(view_a, view_b)`` returns the scalar training loss and
``after_step(progress)`` does per-step bookkeeping (momentum updates, prototype normalisation).
The registry :data:`METHODS` maps a name to its paradigm and constructor; the training loop that
drives them is :func:`sslgeom.train.train_model`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from lightly.loss import (
    BarlowTwinsLoss,
    DINOLoss,
    NegativeCosineSimilarity,
    NTXentLoss,
    SwaVLoss,
    VICRegLoss,
)
from lightly.models.modules.heads import (
    BarlowTwinsProjectionHead,
    BYOLPredictionHead,
    BYOLProjectionHead,
    DINOProjectionHead,
    MoCoProjectionHead,
    SimCLRProjectionHead,
    SimSiamPredictionHead,
    SimSiamProjectionHead,
    SwaVProjectionHead,
    SwaVPrototypes,
    VICRegProjectionHead,
)
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule


class SSLMethod(nn.Module):
    """Base class: a backbone plus method-specific parts.

    Subclasses implement :meth:`loss`; :meth:`after_step` defaults to doing nothing.
    """

    #: whether the method needs labels (only the supervised reference does)
    uses_labels = False

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.feature_dim: int = backbone.feature_dim
        #: run backbones under bfloat16 autocast (heads and losses stay float32); set by train_model
        self.mixed_precision = False

    def encode(self, images: torch.Tensor, backbone: nn.Module | None = None) -> torch.Tensor:
        """Backbone features ``(batch, feature_dim)`` in float32, optionally computed in bfloat16."""
        backbone = self.backbone if backbone is None else backbone
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=self.mixed_precision):
            features = backbone(images)
        return features.float()

    def loss(self, view_a: torch.Tensor, view_b: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def after_step(self, progress: float) -> None:
        """Per-step bookkeeping; ``progress`` is the fraction of training done, in ``[0, 1]``."""

    def set_progress(self, progress: float) -> None:
        """Tell the method how far training is, without side effects (used when resuming a run)."""


def _momentum_copy(module: nn.Module) -> nn.Module:
    teacher = copy.deepcopy(module)
    deactivate_requires_grad(teacher)
    return teacher


class MomentumMethod(SSLMethod):
    """A method whose teacher modules follow their online twins by an exponential moving average.

    Subclasses list ``(online attribute, teacher attribute)`` pairs in ``teacher_pairs``; after every
    step each teacher moves towards its twin with the momentum rising from ``momentum[0]`` to
    ``momentum[1]`` on a cosine schedule over training.
    """

    teacher_pairs: tuple[tuple[str, str], ...] = ()

    def __init__(self, backbone: nn.Module, momentum: tuple[float, float]) -> None:
        super().__init__(backbone)
        self.momentum = momentum

    def after_step(self, progress):
        m = cosine_schedule(int(progress * 1000), 1000, *self.momentum)
        for online, teacher in self.teacher_pairs:
            update_momentum(getattr(self, online), getattr(self, teacher), m)


class SimCLR(SSLMethod):
    """SimCLR: NT-Xent between two views, negatives from the batch."""

    def __init__(self, backbone: nn.Module, temperature: float = 0.2, out_dim: int = 64) -> None:
        super().__init__(backbone)
        self.head = SimCLRProjectionHead(self.feature_dim, self.feature_dim, out_dim)
        self.criterion = NTXentLoss(temperature=temperature)

    def loss(self, view_a, view_b):
        z_a = self.head(self.encode(view_a))
        z_b = self.head(self.encode(view_b))
        return self.criterion(z_a, z_b)


class MoCoV2(MomentumMethod):
    """MoCo-v2: query encoder vs momentum key encoder, negatives from a memory bank."""

    teacher_pairs = (("backbone", "backbone_key"), ("head", "head_key"))

    def __init__(self, backbone: nn.Module, temperature: float = 0.2, out_dim: int = 64, bank_size: int = 4096,
                 momentum: tuple[float, float] = (0.99, 1.0)) -> None:
        super().__init__(backbone, momentum)
        self.head = MoCoProjectionHead(self.feature_dim, self.feature_dim, out_dim)
        self.backbone_key = _momentum_copy(self.backbone)
        self.head_key = _momentum_copy(self.head)
        self.criterion = NTXentLoss(temperature=temperature, memory_bank_size=(bank_size, out_dim))

    def loss(self, view_a, view_b):
        query = self.head(self.encode(view_a))
        with torch.no_grad():
            key = self.head_key(self.encode(view_b, self.backbone_key))
        return self.criterion(query, key)


class BYOL(MomentumMethod):
    """BYOL: online network with predictor regresses a momentum target (negative cosine)."""

    teacher_pairs = (("backbone", "backbone_target"), ("projector", "projector_target"))

    def __init__(self, backbone: nn.Module, hidden_dim: int = 512, out_dim: int = 128,
                 momentum: tuple[float, float] = (0.99, 1.0)) -> None:
        super().__init__(backbone, momentum)
        self.projector = BYOLProjectionHead(self.feature_dim, hidden_dim, out_dim)
        self.predictor = BYOLPredictionHead(out_dim, hidden_dim, out_dim)
        self.backbone_target = _momentum_copy(self.backbone)
        self.projector_target = _momentum_copy(self.projector)
        self.criterion = NegativeCosineSimilarity()

    def loss(self, view_a, view_b):
        p_a = self.predictor(self.projector(self.encode(view_a)))
        p_b = self.predictor(self.projector(self.encode(view_b)))
        with torch.no_grad():
            t_a = self.projector_target(self.encode(view_a, self.backbone_target))
            t_b = self.projector_target(self.encode(view_b, self.backbone_target))
        return 0.5 * (self.criterion(p_a, t_b) + self.criterion(p_b, t_a))


class SimSiam(SSLMethod):
    """SimSiam: predictor plus stop-gradient, no momentum encoder and no negatives."""

    def __init__(self, backbone: nn.Module, proj_dim: int = 256, pred_hidden: int = 64) -> None:
        super().__init__(backbone)
        self.projector = SimSiamProjectionHead(self.feature_dim, proj_dim, proj_dim)
        self.predictor = SimSiamPredictionHead(proj_dim, pred_hidden, proj_dim)
        self.criterion = NegativeCosineSimilarity()

    def loss(self, view_a, view_b):
        z_a = self.projector(self.encode(view_a))
        z_b = self.projector(self.encode(view_b))
        p_a, p_b = self.predictor(z_a), self.predictor(z_b)
        return 0.5 * (self.criterion(p_a, z_b.detach()) + self.criterion(p_b, z_a.detach()))


class BarlowTwins(SSLMethod):
    """Barlow Twins: cross-correlation of the two views' projections pushed to the identity."""

    def __init__(self, backbone: nn.Module, proj_dim: int = 512, lambda_param: float = 5e-3) -> None:
        super().__init__(backbone)
        self.projector = BarlowTwinsProjectionHead(self.feature_dim, proj_dim, proj_dim)
        self.criterion = BarlowTwinsLoss(lambda_param=lambda_param)

    def loss(self, view_a, view_b):
        return self.criterion(self.projector(self.encode(view_a)), self.projector(self.encode(view_b)))


class VICReg(SSLMethod):
    """VICReg: invariance, variance and covariance terms on the projections."""

    def __init__(self, backbone: nn.Module, proj_dim: int = 512) -> None:
        super().__init__(backbone)
        self.projector = VICRegProjectionHead(self.feature_dim, proj_dim, proj_dim, num_layers=2)
        self.criterion = VICRegLoss()

    def loss(self, view_a, view_b):
        return self.criterion(self.projector(self.encode(view_a)), self.projector(self.encode(view_b)))


class SwAV(SSLMethod):
    """SwAV: swapped prediction of Sinkhorn cluster codes over learnable prototypes."""

    def __init__(
        self, backbone: nn.Module, out_dim: int = 64, n_prototypes: int = 100, frozen_fraction: float = 0.05
    ) -> None:
        super().__init__(backbone)
        self.projector = SwaVProjectionHead(self.feature_dim, 256, out_dim)
        self.prototypes = SwaVPrototypes(out_dim, n_prototypes)
        self.criterion = SwaVLoss(temperature=0.1, sinkhorn_epsilon=0.05)
        # prototypes stay fixed at the start so the codes do not chase a moving target
        self.frozen_fraction = frozen_fraction
        self._progress = 0.0

    def loss(self, view_a, view_b):
        self.prototypes.normalize()
        self.prototypes.requires_grad_(self._progress >= self.frozen_fraction)
        scores = [
            self.prototypes(F.normalize(self.projector(self.encode(view)), dim=1))
            for view in (view_a, view_b)
        ]
        return self.criterion(scores, [])

    def after_step(self, progress):
        self.set_progress(progress)

    def set_progress(self, progress):
        self._progress = progress


class DINO(MomentumMethod):
    """DINO: student matches a centred, sharpened momentum teacher over many output dimensions."""

    teacher_pairs = (("backbone", "backbone_teacher"), ("head", "head_teacher"))

    def __init__(
        self,
        backbone: nn.Module,
        out_dim: int = 1024,
        momentum: tuple[float, float] = (0.99, 1.0),
        teacher_temp: float = 0.04,
    ) -> None:
        super().__init__(backbone, momentum)
        self.head = DINOProjectionHead(self.feature_dim, 256, 64, out_dim, batch_norm=True)
        self.backbone_teacher = _momentum_copy(self.backbone)
        # weight-normed layers cannot be deep-copied: build a twin and copy the weights
        self.head_teacher = DINOProjectionHead(self.feature_dim, 256, 64, out_dim, batch_norm=True)
        self.head_teacher.load_state_dict(self.head.state_dict())
        deactivate_requires_grad(self.head_teacher)
        self.criterion = DINOLoss(
            output_dim=out_dim, warmup_teacher_temp=teacher_temp, teacher_temp=teacher_temp,
            warmup_teacher_temp_epochs=0,
        )

    def loss(self, view_a, view_b):
        student = [self.head(self.encode(view)) for view in (view_a, view_b)]
        with torch.no_grad():
            teacher = [self.head_teacher(self.encode(view, self.backbone_teacher)) for view in (view_a, view_b)]
        return self.criterion(teacher, student, teacher_temp=self.criterion.teacher_temp)


class Supervised(SSLMethod):
    """Supervised reference: linear classifier on the backbone, cross-entropy on labels."""

    uses_labels = True

    def __init__(self, backbone: nn.Module, n_classes: int = 10) -> None:
        super().__init__(backbone)
        self.classifier = nn.Linear(self.feature_dim, n_classes)

    def loss(self, view_a, labels):
        return F.cross_entropy(self.classifier(self.encode(view_a)), labels)


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its paradigm label and how to wrap a backbone."""

    name: str
    paradigm: str
    build: Callable[[nn.Module], SSLMethod] | None


#: name -> spec. ``random`` has no training (``build`` is None).
METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("simclr", "contrastive", SimCLR),
        MethodSpec("moco-v2", "contrastive", MoCoV2),
        MethodSpec("byol", "non-contrastive", BYOL),
        MethodSpec("simsiam", "non-contrastive", SimSiam),
        MethodSpec("barlowtwins", "non-contrastive", BarlowTwins),
        MethodSpec("vicreg", "non-contrastive", VICReg),
        MethodSpec("swav", "clustering", SwAV),
        MethodSpec("dino", "clustering", DINO),
        MethodSpec("supervised", "supervised", Supervised),
        MethodSpec("random", "random", None),
    )
}


def get_method(name: str) -> MethodSpec:
    """Look up a method; unknown names raise an error listing the registered ones."""
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}; choose one of {sorted(METHODS)}.")
    return METHODS[name]
