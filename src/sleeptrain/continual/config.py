"""Typed config of `sleeptrain continual`, validated at load like the training config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from sleeptrain.config import check_choice, check_fraction, check_positive, help_field
from sleeptrain.continual.methods import METHODS
from sleeptrain.continual.options import SGDSection, SRCSection
from sleeptrain.errors import ConfigError

BENCHMARKS = ("patches", "split_mnist", "split_fashion", "cross_modal", "features", "split_digits")
MAX_TUNE_WIDEN = 5      # as `sleeptrain compare`'s tune.widen
MAX_TUNE_POINTS = 50    # a respaced default grid (tune_points): every point trains on every tuning seed
MAX_OVERLAP = 100 // 6  # Patches: 10x10 images with 16 - overlap pixels of their own


@dataclass
class NetConfig:
    hidden: list[int] = help_field("hidden layer sizes (bias-free ReLU)", default_factory=lambda: [1200, 1200])
    output: str = help_field("relu_mse (published MNIST) | softmax_ce (Patches)", default="relu_mse")
    dropout: float = help_field("non-inverted dropout on hidden layers", default=0.25)
    init: str = help_field("uniform: U(-net.init_range, net.init_range), the authors' scripts | glorot: Glorot-uniform "
                           "(this project's earlier default)", default="uniform")
    init_range: float = help_field("uniform init: half-width (the scripts' (rand - 0.5) * 0.01 * 2)", default=0.01)
    output_grad: str = help_field("relu_mse: toolbox (the output error back-propagated without the ReLU derivative, "
                                  "as the authors' nnbp) | exact (through the ReLU)", default="toolbox")

    def __post_init__(self) -> None:
        check_choice("net.output", self.output, ("relu_mse", "softmax_ce"))
        check_choice("net.init", self.init, ("uniform", "glorot"))
        check_positive("net.init_range", self.init_range)
        check_choice("net.output_grad", self.output_grad, ("toolbox", "exact"))
        check_fraction("net.dropout", self.dropout, closed_high=False)
        for h in self.hidden:
            check_positive("net.hidden", h)


@dataclass
class ContinualRunConfig:
    dir: Optional[str] = help_field("run directory (default: runs/<date-time>-continual-<benchmark>-<method>)",
                                    default=None)
    plot: bool = help_field("write the accuracy plots", default=True)


@dataclass
class ContinualConfig:
    benchmark: str = help_field(" | ".join(BENCHMARKS) + " (the default, patches, is the paper's Fig. 1B: forgetting "
                                "and SRC's recovery in under a minute)", default="patches")
    method: str = help_field(" | ".join(METHODS), default="src")
    seed: int = help_field("first seed", default=0)
    seeds: int = help_field("repeats with seeds seed, seed+1, ... (split benchmarks: seed k > 0 also permutes the "
                            "class order, so repeats are different task orders)", default=1)
    task_orders: str = help_field("split benchmarks: permuted (seed k > 0 permutes the classes: repeats are task "
                                  "orders, as the paper reports) | natural (0/1, 2/3, ... for every seed, only the "
                                  "init and shuffles change, as the authors' run_class_task_summary.m) | pairs (seed k > 0 permutes "
                                  "the order of the natural pairs 0/1, 2/3, ..., as run_icarl_sleep.m's randperm(5))",
                                  default="permuted")
    data_path: Optional[str] = help_field("split_mnist, cross_modal: the MNIST folder (train-/t10k-images-idx3-ubyte"
                                          "(.gz), train-/t10k-labels-idx1-ubyte(.gz))", default=None)
    fashion_path: Optional[str] = help_field("split_fashion, cross_modal: the Fashion-MNIST folder (same files)",
                                             default=None)
    features_path: Optional[str] = help_field("features: an .npz of pretrained features (x_train, y_train, x_test, "
                                              "y_test; CUB-200 / CIFAR-10 as the paper)", default=None)
    classes_per_task: int = help_field("features: classes per task (CUB-200: 100, CIFAR-10: 2)", default=2)
    train_per_task: Optional[int] = help_field("split_mnist/split_fashion: training images per task, the first in "
                                               "file order (the authors' indices(1:5000); null: all)", default=5000)
    test_fraction: float = help_field("split_digits: held-out fraction of each class", default=0.2)
    overlaps: list[int] = help_field("patches: overlaps to sweep",
                                     default_factory=lambda: list(range(MAX_OVERLAP + 1)))
    copies: int = help_field("patches: training copies of each image per task (the authors' script: 1)", default=1)
    rehearsal_fraction: float = help_field("rehearsal: fraction of the old tasks' training images mixed into each "
                                           "new task", default=0.1)
    rehearsal_draw: str = help_field("rehearsal: fresh (a new random draw from all old tasks' images for every task, "
                                     "rounded to hundreds, as MNIST/run_sleep_with_replay.m) | kept (a fixed memory: "
                                     "the fraction of each task's training images kept when it ends)",
                                     default="fresh")
    rehearsal_loss: str = help_field("rehearsal: concat (the old images join the task's training set, plain loss, "
                                     "as MNIST/run_sleep_with_replay.m) | weighted (the paper's Methods: each "
                                     "mini-batch is paired with an equal-sized draw of the stored old images and the "
                                     "loss is 1/t new + (1 - 1/t) old at task t, van de Ven et al. 2020)",
                                     default="concat")
    ewc_strength: float = help_field("ewc: lambda of the penalty lambda/2 sum_i F_i (w_i - w*_i)^2 (stable with SGD while "
                                     "lambda * max F < 2 / sgd.lr)", default=100.0)
    ewc_gamma: float = help_field("ewc: decay of the running Fisher between tasks (online EWC; 1 = sum)", default=1.0)
    si_strength: float = help_field("si: c of the penalty c sum_k Omega_k (w_k - w*_k)^2 (Zenke et al. 2017; with "
                                    "plain SGD at lr 0.1 c = 1 diverges on Split-Digits, 0.1 is stable)", default=0.1)
    si_xi: float = help_field("si: damping xi of Omega_k += omega_k / (Delta_k^2 + xi)", default=1e-3)
    owm_alphas: Optional[list[float]] = help_field("owm: alpha of each layer's projector (null: 0.9 for the first, "
                                                   "decaying x 0.001 over each task, 0.6 for the others, as the OWM "
                                                   "code)", default=None)
    memory: int = help_field("icarl: K, the exemplar images stored in all, round(K / classes seen) per class "
                             "(the paper's Table 2: 100, 200, 1000, 2000)", default=100)
    exemplar_selection: str = help_field("icarl: herding (iCaRL's rule; construct_exemplar_set2) | random "
                                         "(construct_exemplar_set_random)", default="herding")
    distillation: bool = help_field("icarl: old classes' exemplars train on the network's softmax outputs (soft "
                                    "targets, the paper's distillation); false: on their one-hot labels",
                                    default=True)
    search_trials: int = help_field("> 0: instead of a run, search the SRC parameters for this many trials, each scored "
                                    "by training accuracy averaged over the task orders of seeds seed..seed+seeds-1, "
                                    "and write search.json", default=0)
    search_spread: float = help_field("search: each parameter drawn log-uniformly within this factor of its value",
                                      default=4.0)
    search_strategy: str = help_field("search: random (around the start vector) | evolve (mutate the best so far, "
                                      "narrowing)", default="random")
    search_sleep_length: bool = help_field("search: also search a factor on src.iterations and src.growth",
                                           default=True)
    validation: int = help_field("hold this many training images per class out as a validation split (seeded; "
                                 "never trained or slept on; continual/validation.py); 0: none", default=0)
    tune: dict[str, Any] = help_field("a grid per key, each method tuned alike on the validation split "
                                      "(`tune=KEY:[v1,v2]` on the command line, `tune=default`: the method's "
                                      "documented grid; continual/tuning.py)", default_factory=dict)
    tune_seeds: list[int] = help_field("the seeds the grid is run on (their own task orders; the reported seeds "
                                       "are run once, at the choice)", default_factory=lambda: [100])
    tune_points: int = help_field("with tune=default: each key's documented grid respaced to this many geometric "
                                  "values between its ends, so every method gets the same number of trials (e.g. "
                                  "SRC's search_trials); 0: the documented grid as it is", default=0)
    tune_widen: int = help_field("a choice on a grid's edge extends that key's grid by the next value of its "
                                 "progression, up to this many times (0: flagged only; continual/tuning.py)",
                                 default=0)
    eval_every: int = help_field("> 0: every this many SGD iterations (and before and after each sleep) evaluate "
                                 "every task seen so far: the curve, min-ACC and WC-ACC (continual/curve.py)",
                                 default=0)
    run: ContinualRunConfig = field(default_factory=ContinualRunConfig)
    net: NetConfig = field(default_factory=NetConfig)
    sgd: SGDSection = field(default_factory=SGDSection)
    src: SRCSection = field(default_factory=SRCSection)

    def __post_init__(self) -> None:
        self._check_protocol()
        self._check_method_parameters()
        self._check_net_and_data()

    def _check_protocol(self) -> None:
        """The benchmark, the seeds, validation, tuning, search and continual evaluation."""
        check_choice("benchmark", self.benchmark, BENCHMARKS)
        check_choice("method", self.method, METHODS)
        check_positive("seed", self.seed, allow_zero=True)
        check_positive("seeds", self.seeds)
        check_fraction("test_fraction", self.test_fraction, closed_low=False, closed_high=False)
        check_positive("copies", self.copies)
        check_positive("train_per_task", self.train_per_task, allow_none=True)
        check_choice("task_orders", self.task_orders, ("permuted", "natural", "pairs"))
        check_positive("classes_per_task", self.classes_per_task)
        if self.benchmark == "features" and not self.features_path:
            raise ConfigError("features_path: required with benchmark=features (an .npz of x_train, y_train, x_test, "
                              "y_test)")
        for overlap in self.overlaps:
            if not 0 <= overlap <= MAX_OVERLAP:
                raise ConfigError(f"overlaps: each overlap must be in [0, {MAX_OVERLAP}] (a 10x10 patch image has "
                                  f"{MAX_OVERLAP} - overlap pixels of its own), got {overlap}")
        check_positive("search_trials", self.search_trials, allow_zero=True)
        check_positive("validation", self.validation, allow_zero=True)
        check_positive("eval_every", self.eval_every, allow_zero=True)
        if self.validation and self.benchmark == "patches":
            raise ConfigError("validation: patches has one image per class, none to hold out; use a split benchmark")
        if self.tune and not self.validation:
            raise ConfigError("tune: choices are made on a validation split; add validation=N (images per class "
                              "held out of training, e.g. validation=500)")
        if self.eval_every and (self.benchmark == "patches" or self.method == "joint"):
            raise ConfigError(f"eval_every: continual evaluation follows a task sequence; not with "
                              f"{'benchmark=patches' if self.benchmark == 'patches' else 'method=joint'}")
        if not self.tune_seeds:
            raise ConfigError("tune_seeds: give at least one seed, e.g. [100]")
        if self.tune_points and not 2 <= self.tune_points <= MAX_TUNE_POINTS:
            raise ConfigError(f"tune_points: expected 0 (the documented grid) or a whole number from 2 to "
                              f"{MAX_TUNE_POINTS}, got {self.tune_points}")
        if not 0 <= self.tune_widen <= MAX_TUNE_WIDEN:
            raise ConfigError(f"tune_widen: expected a whole number from 0 to {MAX_TUNE_WIDEN} (how many times an edge "
                              f"choice extends its grid), got {self.tune_widen}")
        if self.search_spread <= 1:
            raise ConfigError(f"search_spread: must be > 1, got {self.search_spread}")
        check_choice("search_strategy", self.search_strategy, ("random", "evolve"))
        if self.search_trials and self.benchmark == "patches":
            raise ConfigError("search_trials: search a split benchmark (Patches has a parameter set per overlap)")
        if self.search_trials and self.method not in ("src", "rehearsal_src"):
            raise ConfigError(f"method: a search fits the sleep of src or rehearsal_src, got {self.method!r}")

    def _check_method_parameters(self) -> None:
        """Each method's own parameters (rehearsal, iCaRL, EWC, SI, OWM)."""
        check_fraction("rehearsal_fraction", self.rehearsal_fraction, closed_low=False)
        check_choice("rehearsal_draw", self.rehearsal_draw, ("fresh", "kept"))
        check_choice("rehearsal_loss", self.rehearsal_loss, ("concat", "weighted"))
        check_positive("memory", self.memory)
        check_choice("exemplar_selection", self.exemplar_selection, ("herding", "random"))
        if self.method in ("icarl", "icarl_src") and self.benchmark in ("patches", "cross_modal"):
            raise ConfigError(f"method: {self.method} needs a class-incremental split benchmark (split_mnist, "
                              f"split_fashion, split_digits, features), got benchmark={self.benchmark}")
        check_positive("ewc_strength", self.ewc_strength, allow_zero=True)
        check_fraction("ewc_gamma", self.ewc_gamma, closed_low=False)
        check_positive("si_strength", self.si_strength, allow_zero=True)
        check_positive("si_xi", self.si_xi)
        if self.owm_alphas is not None:
            if len(self.owm_alphas) != len(self.net.hidden) + 1:
                raise ConfigError(f"owm_alphas: one alpha per layer ({len(self.net.hidden) + 1} for net.hidden="
                                  f"{self.net.hidden}), got {len(self.owm_alphas)}")
            for alpha in self.owm_alphas:
                check_positive("owm_alphas", alpha)

    def _check_net_and_data(self) -> None:
        """SRC's thresholds against the network's layers; the data folders the benchmark needs."""
        n_layers = len(self.net.hidden) + 1
        if len(self.src.betas) != n_layers:
            raise ConfigError(f"src.betas: one threshold per layer ({n_layers} for net.hidden={self.net.hidden}), "
                              f"got {len(self.src.betas)}")
        if self.benchmark in ("split_mnist", "cross_modal") and not self.data_path:
            raise ConfigError(f"data_path: required with benchmark={self.benchmark} (the folder of the MNIST idx files)")
        if self.benchmark in ("split_fashion", "cross_modal") and not self.fashion_path:
            raise ConfigError(f"fashion_path: required with benchmark={self.benchmark} (the folder of the "
                              f"Fashion-MNIST idx files)")
