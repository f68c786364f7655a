"""Each paper's headline experiment in one command: ``agekit reproduce NAME --data-root DIR --out DIR``.

An experiment is data (:class:`Experiment`): the datasets and how the paper prepared them, the
training chain (pre-training stages included, each a shipped recipe with overrides), the
evaluation protocol with every fold, and the paper's figures with the exact definition of their
metric. :func:`run_experiment` prepares the faces (``agekit prepare``'s machinery), trains each
stage (a finished stage is skipped by its ``final.safetensors``; an unfinished one resumes from
its ``last.ckpt``), evaluates every fold, aggregates the folds (mean and sample standard
deviation) and writes ``results.md`` and ``results.json``: the paper's figure beside ours, the
protocol, the number of images used and every known difference.

``epochs_scale`` shortens the same experiment: every stage's epochs (or steps) and its
learning-rate schedule are scaled by the factor (at least one epoch); the table says so.

``on="utkface"`` runs the same chain on a dataset that is at hand (:data:`ON_DATASETS`): the
pre-training stages become one pre-training stage on its training part, the target stage trains on
it again and is tested on its test part; the table says so and keeps the paper's figure for reference.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agekit.data.cache import PreparedCache
from agekit.data.datasets.adience import check_fold_sizes
from agekit.data.prepare import prepare
from agekit.evaluation.evaluate import evaluate
from agekit.evaluation.metrics import CA_DEFINITIONS, check_ca_def
from agekit.preprocessing import PreprocessSpec
from agekit.training.engine import resolve_spec, train
from agekit.training.recipes import did_you_mean, load_recipe, parse_recipe

ADIENCE_PREP = ("the in-plane aligned faces (aligned/) scaled whole to 256 (detector 'cropped', margin 0, no "
                "alignment), 227 crops (LMTCNN Sec. 4.1)")


@dataclass(frozen=True)
class DatasetUse:
    """A dataset an experiment reads from ``DATA_ROOT/<folder>`` (default: its adapter name).

    ``detector``: how faces are found (``agekit prepare --detector``): ``dlib``; ``cropped`` (the image is the
    face); ``given`` (the face box the dataset gives, e.g. IMDB-WIKI's ``face_location``). ``fallback``: the
    detector run when ``detector`` finds no face (``cropped``: the whole image, so no image is dropped);
    ``multi_face``: ``largest``, or ``skip`` to keep only photos with exactly one face (SSR-Net's MORPH code).
    """

    name: str  # adapter name (agekit prepare DATASET)
    detector: str = "dlib"
    prepared: str = ""  # how the paper prepared the faces (for the table)
    folder: str | None = None
    fallback: str | None = None
    multi_face: str = "largest"

    @property
    def dir_name(self) -> str:
        return self.folder or self.name


@dataclass(frozen=True)
class Stage:
    """One training run of the chain: a shipped recipe on one dataset's protocol.

    ``per_fold``: trained once per fold of the experiment (its splits name the fold: ``{fold}``
    is replaced by ``fold0_``, ``run3_``, ... or by nothing for a single split); otherwise
    trained once and shared by every fold. Each stage starts from the previous one's weights.
    """

    name: str
    recipe: str
    dataset: str
    protocol: str
    train_split: str = "train"
    val_split: str | None = "val"
    overrides: tuple[str, ...] = ()
    per_fold: bool = False


@dataclass(frozen=True)
class Figure:
    """A figure of the paper: ``metric`` (a key of the evaluation report; ``ca.3`` = CA(3)) and its value."""
    metric: str
    paper: float
    where: str
    definition: str
    unit: float = 1.0  # the paper's value = ours * unit (e.g. 100 for percent)
    generation: int | None = None  # LRN: the refinery generation t the figure is for (None: the last trained)


@dataclass(frozen=True)
class Experiment:
    name: str
    paper: str
    title: str
    datasets: dict[str, DatasetUse]
    stages: tuple[Stage, ...]
    figures: tuple[Figure, ...]
    protocol: str  # the evaluation protocol, in words
    test_split: str = "test"  # "{fold}test": one test split per fold
    ten_view: bool | None = None
    flip: bool = False
    ca_def: str = "le"
    differences: tuple[str, ...] = ()  # of the data, the protocol and the chain
    model_notes: tuple[str, ...] = ()  # of the network and its training (they hold on any dataset)
    border: str = "constant"  # crops past the photo: black, or "replicate" (its edge pixels repeated)
    pooled: bool = False  # the figure is over all test images of all folds (leave-one-person-out), not a fold mean
    on: str | None = None  # the dataset the chain runs on instead of the paper's (see ON_DATASETS)

    @property
    def test_stage(self) -> Stage:
        return self.stages[-1]


def _pretrain(recipe: str, overrides: tuple[str, ...] = (), imdb_batch: int = 128) -> tuple[Stage, Stage]:
    """The IMDB -> WIKI initialisation chain (80/20 each) of SSR-Net, C3AE and HSR."""
    return (Stage("imdb", recipe, "imdb", "imdb", "train", "val",
                  (f"data.batch_size={imdb_batch}", "data.test_split=null") + overrides),
            Stage("wiki", recipe, "wiki", "wiki", "train", "val", ("data.batch_size=50", "data.test_split=null")
                  + overrides))


IMDB_WIKI = {
    "imdb": DatasetUse("imdb", "given", "the dataset's own crops (imdb_crop/) cut at their face_location box (no "
                       "re-detection), face_score >= 1, no second face, age 0-100, gender known (SSR-Net code)"),
    "wiki": DatasetUse("wiki", "given", "the dataset's own crops (wiki_crop/) cut at their face_location box, "
                       "same filters"),
}
MORPH = DatasetUse("morph", "dlib", "dlib HOG detection + landmarks, similarity alignment, photos with exactly one "
                   "face, 0.4 margin, 64x64 (SSR-Net code)", multi_face="skip")
# FG-NET's scanned photos: dlib misses some; the whole photo stands in (edges repeated), so all 1,002 stay.
FGNET = DatasetUse("fgnet", "dlib", "dlib detection, 0.4 margin; a photo dlib misses is kept whole (detector "
                   "'cropped' as fallback, crops past it repeat its edge pixels)", fallback="cropped")
MORPH_MAE = "MAE = mean |predicted age - true age| over the 20 % test images"
FACE_CROPS = ("IMDB-WIKI: SSR-Net's code resizes each whole crop image of imdb_crop/ and wiki_crop/ (the face "
              "with the IMDB-WIKI authors' 40 % margin); agekit cuts the same crops at their face_location box with "
              "the view's margin, which is that image up to rounding")
MORPH_VAL = ("the 20 % test part is also the validation set of the last stage, as in the released code (no model "
             "selection on it: the last epoch is evaluated)")
MORPH_VAL_PLATEAU = "the 20 % test part is also the validation set of the last stage (its plateau schedule reads it)"
C3AE_FULL_PARAMS = ("agekit's full model has 48,633 parameters (the released v84 model), not the paper's 39.7K, "
                    "which no public variant reproduces")
C3AE_DROPOUT = ("dropout (C3AE Sec. 4.2: 0.2 plain, 0.3 full) sits before W1 (the paper does not say where); the "
                "released re-implementation has none: --set model.config.dropout=0")


def _experiments() -> dict[str, Experiment]:
    ssr = "ssrnet_utkface"
    out = [
        Experiment(
            "ssrnet_morph", "SSR-Net (IJCAI 2018)", "SSR-Net(3,3,3), IMDB -> WIKI -> MORPH II 80/20",
            {**IMDB_WIKI, "morph": MORPH},
            (*_pretrain(ssr), Stage("morph", ssr, "morph", "morph_80_20", "train", "test", ("data.batch_size=50",))),
            (Figure("mae", 3.16, "SSR-Net Table 1", MORPH_MAE),),
            "MORPH II random 80/20 split (seed 1); MAE on the 20 %",
            differences=(FACE_CROPS, MORPH_VAL),
        ),
        Experiment(
            "ssrnet_megaage_asian", "SSR-Net (IJCAI 2018)", "SSR-Net(3,3,3), IMDB -> WIKI -> MegaAge-Asian",
            {**IMDB_WIKI, "megaage_asian": DatasetUse(
                "megaage_asian", "dlib", "dlib detection, 0.4 margin; a photo dlib misses is kept whole",
                fallback="cropped")},
            (*_pretrain(ssr), Stage("megaage_asian", ssr, "megaage_asian", "megaage_asian", "train", "test",
                                    ("data.batch_size=50",))),
            (Figure("ca.3", 0.549, "SSR-Net Table 2", "CA(3) = share of the 3,945 test images with |error| < 3"),
             Figure("ca.5", 0.741, "SSR-Net Table 2", "CA(5) = share of the 3,945 test images with |error| < 5")),
            "MegaAge-Asian train / test lists (3,945 test images); CA(n) counts |error| < n (SSR-Net Sec. 4.5)",
            ca_def="lt", border="replicate",
            differences=(FACE_CROPS, "the test list is also the validation set of the last stage (no model "
                         "selection on it)"),
        ),
        Experiment(
            "c3ae_plain_morph", "C3AE (CVPR 2019)", "C3AE plain model, IMDB -> WIKI -> MORPH II 80/20",
            {**IMDB_WIKI, "morph": MORPH},
            (*_pretrain("c3ae_plain_utkface", imdb_batch=50),
             Stage("morph", "c3ae_plain_utkface", "morph", "morph_80_20", "train", "test")),
            (Figure("mae", 3.13, "C3AE Table 2", MORPH_MAE),),
            "MORPH II random 80/20 split (seed 1); MAE on the 20 %",
            differences=(FACE_CROPS, MORPH_VAL_PLATEAU), model_notes=(C3AE_DROPOUT,),
        ),
        Experiment(
            "c3ae_full_morph", "C3AE (CVPR 2019)", "C3AE full model, IMDB -> WIKI -> MORPH II 80/20",
            {**IMDB_WIKI, "morph": MORPH},
            (*_pretrain("c3ae_full_utkface", imdb_batch=50),
             Stage("morph", "c3ae_full_utkface", "morph", "morph_80_20", "train", "test")),
            (Figure("mae", 2.75, "C3AE Table 5, full model (IMDB-WIKI)", MORPH_MAE),),
            "MORPH II random 80/20 split (seed 1); MAE on the 20 %",
            differences=(FACE_CROPS, MORPH_VAL_PLATEAU), model_notes=(C3AE_FULL_PARAMS, C3AE_DROPOUT),
        ),
        Experiment(
            "c3ae_full_morph_scratch", "C3AE (CVPR 2019)", "C3AE full model from scratch, MORPH II 80/20",
            {"morph": MORPH},
            (Stage("morph", "c3ae_full_utkface", "morph", "morph_80_20", "train", "test"),),
            (Figure("mae", 2.78, "C3AE Table 5, full model (Scratch)", MORPH_MAE),),
            "MORPH II random 80/20 split (seed 1); MAE on the 20 %; no pre-training",
            differences=(MORPH_VAL_PLATEAU,), model_notes=(C3AE_FULL_PARAMS, C3AE_DROPOUT),
        ),
        Experiment(
            "c3ae_full_fgnet", "C3AE (CVPR 2019)", "C3AE full model, IMDB -> WIKI -> FG-NET, ten random 30-image tests",
            {**IMDB_WIKI, "fgnet": FGNET},
            (*_pretrain("c3ae_full_utkface", imdb_batch=50),
             Stage("fgnet", "c3ae_full_utkface", "fgnet", "fgnet_random30", "{fold}train", None,
                   ("data.test_split=null",), per_fold=True)),
            (Figure("mae", 2.95, "C3AE Table 6, C3AE (WIKI-IMDB): 2.95 +- 0.17 over ten runs",
                    "MAE over each run's 30 test images; mean and std over the ten runs"),),
            "FG-NET: ten runs, each testing on 30 random images and training on the rest (C3AE Sec. 4.5)",
            test_split="{fold}test", border="replicate",
            differences=(FACE_CROPS, "the paper's ten random splits are not published: agekit's are seeded (seed 0)"),
            model_notes=(C3AE_FULL_PARAMS, C3AE_DROPOUT),
        ),
        Experiment(
            "c3ae_full_fgnet_lopo", "C3AE (CVPR 2019)",
            "C3AE full model, IMDB -> WIKI -> FG-NET, leave one person out (82 folds)",
            {**IMDB_WIKI, "fgnet": FGNET},
            (*_pretrain("c3ae_full_utkface", imdb_batch=50),
             Stage("fgnet", "c3ae_full_utkface", "fgnet", "fgnet_lopo", "{fold}train", None,
                   ("data.test_split=null",), per_fold=True)),
            (Figure("mae", 2.95, "C3AE Table 6 (its own figure is over ten random 30-image tests; the table's "
                    "leave-one-person-out rows with IMDB-WIKI pre-training: DEX 3.09, MV 2.68)",
                    "MAE over all 1,002 images, each predicted by the model of the fold that leaves its person out"),),
            "FG-NET leave one person out: one fold per subject (82), each training on the other 81 subjects; the "
            "MAE is over all test images of all folds together (the protocol of C3AE Table 6's DEX and MV rows)",
            test_split="{fold}test", border="replicate", pooled=True,
            differences=(FACE_CROPS, "C3AE reports no leave-one-person-out figure (Sec. 4.5: 'without training 82 "
                         "models'); 2.95 is its ten-split figure, shown for reference"),
            model_notes=(C3AE_FULL_PARAMS, C3AE_DROPOUT),
        ),
    ]
    hsr_chain = _pretrain("sephsr_90_30_utkface", imdb_batch=50)
    out.append(Experiment(
        "hsr_sephsr_90_30_k3_morph", "HSR-Net (IEEE Access 2023)",
        "3-resolution SepHSR(90,30), IMDB -> WIKI (single resolution) -> MORPH II 80/20",
        {**IMDB_WIKI, "morph": MORPH},
        (*hsr_chain, Stage("morph", "sephsr_90_30_k3_utkface", "morph", "morph_80_20", "train", "test")),
        (Figure("mae", 2.692, "HSR Table 6 (3-resolution SepHSR(90,30), 75.7K)", MORPH_MAE),),
        "MORPH II random 80/20 split (seed 1); the 3-resolution network starts from the single-resolution WIKI "
        "model's convolutional layers (HSR Sec. IV-B)",
        differences=(FACE_CROPS, MORPH_VAL_PLATEAU),
    ))
    for depth, mae in ((1, 3.249), (2, 3.276), (3, 3.209)):
        recipe = f"sephsr_30_10_depth3_{depth}_utkface"
        out.append(Experiment(
            f"hsr_sephsr_30_10_depth3_{depth}_morph", "HSR-Net (IEEE Access 2023)",
            f"SepHSR(30,10) Depth(3,{depth}) ablation, IMDB -> WIKI -> MORPH II 80/20",
            {**IMDB_WIKI, "morph": MORPH},
            (*_pretrain(recipe, imdb_batch=50), Stage("morph", recipe, "morph", "morph_80_20", "train", "test")),
            (Figure("mae", mae, f"HSR Table 9, SepHSR(30,10) Depth(3,{depth})", MORPH_MAE),),
            "MORPH II random 80/20 split (seed 1); MAE on the 20 %",
            differences=(FACE_CROPS, MORPH_VAL_PLATEAU),
        ))
    lrn_pre = ("optimizer.lr=0.01", "generations=1", "data.batch_size=128")  # LRN Sec. 4.2: pre-training on IMDB-WIKI
    lrn_range = ("model.config.min_age=train", "model.config.max_age=train")  # LRN Eq. 1
    lrn_one_set = "the paper pre-trains on IMDB-WIKI as one set; agekit trains IMDB, then WIKI"
    out.append(Experiment(
        "lrn_resnet18_morph", "LRN (Pattern Recognition 2020)",
        "LRN ResNet-18, IMDB -> WIKI pre-training, MORPH II 80/20, generations t = 1..4",
        {**IMDB_WIKI, "morph": MORPH},
        (Stage("imdb", "lrn_resnet18_utkface", "imdb", "imdb", "train", "val", lrn_pre + ("data.test_split=null",)),
         Stage("wiki", "lrn_resnet18_utkface", "wiki", "wiki", "train", "val", lrn_pre + ("data.test_split=null",)),
         Stage("morph", "lrn_resnet18_utkface", "morph", "morph_80_20", "train", "test",
               ("generations=4",) + lrn_range)),
        (Figure("mae", 1.905, "LRN Table 3 / Table 8 (ResNet-18, t = 3)", MORPH_MAE + "; the age is Eq. 20",
                generation=3),),
        "MORPH II random 80/20 split (seed 1); four refinery generations, each evaluated (the figure: t = 3; "
        "Table 8 gives t = 4 as 1.919); the age range "
        "l_1..l_k is the training set's (Eq. 1)",
        differences=(FACE_CROPS, lrn_one_set, "the 20 % test part is also the validation set of the last stage"),
    ))
    out.append(Experiment(
        "lrn_resnet10_tiny_chalearn", "LRN (Pattern Recognition 2020)",
        "LRN ResNet-10-Tiny, IMDB -> WIKI pre-training, ChaLearn LAP 2015 train -> validation",
        {**IMDB_WIKI, "chalearn2015": DatasetUse("chalearn2015", "dlib", "dlib detection, 0.4 margin; a photo dlib "
                                                 "misses is kept whole", fallback="cropped")},
        (Stage("imdb", "lrn_resnet10_tiny_utkface", "imdb", "imdb", "train", "val",
               lrn_pre + ("data.test_split=null",)),
         Stage("wiki", "lrn_resnet10_tiny_utkface", "wiki", "wiki", "train", "val",
               lrn_pre + ("data.test_split=null",)),
         Stage("chalearn", "lrn_resnet10_tiny_utkface", "chalearn2015", "chalearn2015", "train", None,
               ("generations=3", "data.test_split=null") + lrn_range)),
        (Figure("mae", 3.052, "LRN Table 4 (ResNet-10-Tiny)", "MAE against the mean apparent age of the "
                "validation images"),
         Figure("epsilon_error", 0.274, "LRN Table 4 (ResNet-10-Tiny)", "epsilon-error, LRN Eq. 22: mean of "
                "1 - exp(-(x - mu)^2 / (2 sigma^2)) over the validation images")),
        "ChaLearn LAP 2015: train on Train (2,476 images), evaluate on Validation (1,136) with the votes' mean "
        "and std; three refinery generations",
        test_split="val", border="replicate",
        differences=(FACE_CROPS, lrn_one_set),
        model_notes=("the paper does not state the generation of Table 4: agekit evaluates t = 3, the best on "
                     "MORPH II (Table 8)",),
    ))
    for w1, acc, top2, gender in (("1_1", 40.84, 66.10, 82.04), ("2_1", 44.26, 70.78, 85.16)):
        recipe = "lmtcnn_2_1_adience_fold0"
        out.append(Experiment(
            f"lmtcnn_{w1}_adience", "LMTCNN (2018)", f"LMTCNN-{w1.replace('_', '-')} on Adience, five folds, ten-view "
            "testing",
            {"adience": DatasetUse("adience", "cropped", ADIENCE_PREP)},
            (Stage("adience", recipe, "adience", "adience", "{fold}train", "{fold}val",
                   (f"model.name=lmtcnn_{w1}", "preprocess.margin=0", "preprocess.align=false",
                    "data.test_split=null"), per_fold=True),),
            (Figure("age_group_accuracy", acc, "LMTCNN Table 3", "age top-1 accuracy (%) over the 8 groups, ten-view "
                    "scores, mean over the five test folds", 100.0),
             Figure("age_group_top2", top2, "LMTCNN Table 3", "age top-2 accuracy (%), ten-view, mean over five "
                    "folds", 100.0),
             Figure("gender_accuracy", gender, "LMTCNN Table 3", "gender top-1 accuracy (%), ten-view, mean over "
                    "five folds", 100.0)),
            "Adience five-fold cross-validation: fold i tests on fold_i and trains on the other four (validation: "
            "the published per-fold lists when present, else a seeded 10 % of the subjects); ten-view testing "
            "(four corner and centre 227 crops of the 256 face and their mirrors, scores averaged)",
            test_split="{fold}test", ten_view=True,
            differences=("faces with an unknown gender or age group count only in the metrics whose label they "
                         "have",),
        ))
    return {e.name: e for e in out}


EXPERIMENTS: dict[str, Experiment] = _experiments()


def list_experiments() -> list[str]:
    return sorted(EXPERIMENTS)


def get_experiment(name: str, on: str | None = None) -> Experiment:
    """The named experiment; with ``on``, its chain on that dataset instead of the paper's (:func:`on_dataset`)."""
    if name not in EXPERIMENTS:

        raise KeyError(f"unknown experiment {name!r}{did_you_mean(name, list(EXPERIMENTS))}; "
                       "`agekit reproduce --list` lists them")
    return on_dataset(EXPERIMENTS[name], on) if on else EXPERIMENTS[name]


# Datasets at hand that an experiment's chain can run on instead of the paper's (``agekit reproduce --on``): how
# their faces are prepared, the protocol with train / val / test splits, and the settings every stage gets.
ON_DATASETS: dict[str, tuple[DatasetUse, str, tuple[str, ...]]] = {
    "utkface": (DatasetUse("utkface", "cropped", "UTKFace's own aligned and cropped 200x200 faces scaled whole "
                           "(detector 'cropped', margin 0; crops that reach past the photo, HSR's larger resolutions "
                           "and C3AE's context boxes, repeat its edge pixels), as SSR-Net's code takes IMDB-WIKI's "
                           "own crops"), "utkface", ("preprocess.margin=0",)),
}
DATASET_NAMES = {"imdb": "IMDB", "wiki": "WIKI", "morph": "MORPH II", "megaage_asian": "MegaAge-Asian",
                 "fgnet": "FG-NET", "chalearn2015": "ChaLearn LAP 2015", "adience": "Adience", "utkface": "UTKFace"}


def on_dataset(exp: Experiment, on: str) -> Experiment:
    """``exp``'s chain on dataset ``on`` (:data:`ON_DATASETS`) instead of the paper's datasets.

    The pre-training stages (IMDB -> WIKI) become one pre-training stage on ``on``'s training part (validated on
    its validation part) with the last pre-training stage's recipe and settings; the target stage trains on the
    same training part and is tested on ``on``'s test part (one fold). The table says so; the paper's figure,
    for another dataset, stays beside ours for reference.
    """
    if on not in ON_DATASETS:
        raise ValueError(f"--on must be one of {sorted(ON_DATASETS)}, got {on!r}")
    use, protocol, over = ON_DATASETS[on]
    derive_groups = any(f.metric.startswith("age_group") for f in exp.figures)  # LMTCNN's, from the ages (Adience's)
    if derive_groups:
        over = over + ("data.age_groups=adience",)
    name = DATASET_NAMES.get(on, on)
    last, stages = exp.stages[-1], []
    if len(exp.stages) > 1:
        pre = exp.stages[-2]
        stages.append(Stage(f"{on}_pretrain", pre.recipe, on, protocol, "train", "val", over + pre.overrides))
    stages.append(Stage(on, last.recipe, on, protocol, "train", "val", over + last.overrides))
    chain = " -> ".join(DATASET_NAMES.get(st.dataset, st.dataset) for st in exp.stages)
    target = DATASET_NAMES.get(last.dataset, last.dataset)
    groups = ("; its ages are mapped to the 8 Adience age groups (the group an age falls in, else the nearest) for "
              "training and testing" if derive_groups else "")
    sub = (f"run on {name} instead of the paper's data: the chain {chain} becomes "
           + (f"{name} pre-training ({protocol} train, validated on val) -> " if len(stages) > 1 else "")
           + f"{name} ({protocol} train, validated on val), tested on the {protocol} test part; the paper's "
           f"figure is for {target} and stands beside ours for reference only{groups}")
    return Experiment(
        exp.name, exp.paper, f"{exp.title}, run on {name}", {on: use}, tuple(stages), exp.figures,
        f"{name}: the {protocol} protocol's train / val / test parts (one fold) in place of: {exp.protocol}",
        test_split="test", ten_view=exp.ten_view, flip=exp.flip, ca_def=exp.ca_def, differences=(sub,),
        model_notes=exp.model_notes, border="replicate", on=on)


def stage_overrides(exp: Experiment, st: Stage) -> list[str]:
    """The settings ``exp`` gives stage ``st`` (before the fold's data and the command line's ``--set``)."""
    return ([f"preprocess.border={exp.border}"] if exp.border != "constant" else []) + list(st.overrides)


def _fill(split: str | None, fold: str) -> str | None:
    return None if split is None else split.replace("{fold}", f"{fold}_" if fold else "")


def scaled_overrides(recipe: str, overrides: list[str], scale: float) -> list[str]:
    """Overrides that shorten ``recipe`` by ``scale``: epochs (or steps) and the schedule's epoch counts."""
    if scale == 1.0:
        return []
    if not scale > 0:
        raise ValueError(f"--epochs-scale must be positive, got {scale}")

    r = load_recipe(recipe, overrides)
    t, s, out = r["trainer"], r.get("scheduler") or {}, []
    if t.get("max_epochs"):
        out.append(f"trainer.max_epochs={max(1, round(t['max_epochs'] * scale))}")
    if t.get("max_steps", -1) > 0:
        out.append(f"trainer.max_steps={max(1, round(t['max_steps'] * scale))}")
    name = s.get("name")
    if name == "multistep":
        out.append("scheduler.milestones=[" + ",".join(str(max(1, round(m * scale))) for m in s["milestones"]) + "]")
    elif name == "step":
        out.append(f"scheduler.step_size={max(1, round(s['step_size'] * scale))}")
    elif name == "plateau":
        out.append(f"scheduler.patience={max(0, round(s['patience'] * scale))}")
    return out


def _metric(metrics: dict, key: str) -> float | None:
    cur: Any = metrics
    for part in key.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return float(cur) if isinstance(cur, (int, float)) and math.isfinite(cur) else None


def _folds(cache, protocol: str, test_split: str) -> list[str]:
    """The fold prefixes of a protocol: ``fold0``, ``run3``, ... from its ``*_test`` splits; [""] for one split."""
    names = set(cache.splits(protocol))
    if "{fold}" not in test_split:
        return [""]
    suffix = test_split.replace("{fold}", "")
    folds = [n[: -len(suffix) - 1] for n in names if n.endswith("_" + suffix)]
    key = [(int(m.group(1)) if (m := re.search(r"(\d+)$", f)) else -1, f) for f in folds]
    return [f for _, f in sorted(key)]


def detector_for(detector: str | None, dataset: str) -> str | None:
    """The ``--detector`` choice for ``dataset``: ``NAME`` (every dataset) or ``DATASET=NAME,...`` (those listed;
    None for the others, which keep the paper's)."""
    if not detector:
        return None
    if "=" not in detector:
        return detector
    pairs = dict(p.split("=", 1) for p in detector.split(",") if "=" in p)
    return pairs.get(dataset)


def prepare_datasets(exp: Experiment, data_root: Path, cache_root: Path, *, detector: str | None = None,
                     workers: int = 2, limit: int | None = None, overrides: list[str] | None = None,
                     log: Callable[[str], Any] = print) -> dict[str, dict[str, Any]]:
    """Prepare every dataset of ``exp`` with the views its stages need (``overrides``: the settings changed on
    every stage, which may change a view); returns dataset -> cache dir and counts."""

    specs: dict[str, dict[str, Any]] = {}
    for st in exp.stages:
        r = parse_recipe(st.recipe, stage_overrides(exp, st) + list(overrides or []))
        config = dict(r.model.config)
        if config.get("min_age") == "train" or config.get("max_age") == "train":  # the range does not change a view
            config.update(min_age=0, max_age=100)
        spec = resolve_spec(r.model.name, r.preprocess.overrides(), config)
        specs.setdefault(st.dataset, {})[spec.view_key] = spec
    out: dict[str, dict[str, Any]] = {}
    for key, views in specs.items():
        use = exp.datasets[key]
        root, cache_dir = data_root / use.dir_name, cache_root / use.dir_name
        det = detector_for(detector, key) or use.detector
        how = {"detector": det, "fallback_detector": use.fallback, "multi_face": use.multi_face}
        held = _prepared_views(cache_dir, how)
        ready = (cache_dir / "meta.npz").is_file() and set(views) <= set(PreparedCache(cache_dir).views)
        if not ready:
            if not root.is_dir():
                raise FileNotFoundError(f"{root}: dataset {use.name!r} not found (expected DATA_ROOT/{use.dir_name})")
            views = {**held, **views}  # a cache keeps the views it has
            log(f"prepare {use.name}: {root} -> {cache_dir} ({det}, views {sorted(views)})")
            prepare(use.name, root, cache_dir, views=list(views.values()), detector=det, workers=workers,
                    limit=limit, progress=False, multi_face=use.multi_face, fallback_detector=use.fallback)
        cache = PreparedCache(cache_dir)
        report_path = cache_dir / "report.json"
        report = json.loads(report_path.read_text()) if report_path.is_file() else {}
        out[key] = {"cache": str(cache_dir), "rows": len(cache), "detector": det, "fallback": use.fallback,
                    "multi_face": use.multi_face, "counts": report.get("counts", {}),
                    "bad_by_reason": report.get("bad_by_reason", {}),
                    "dropped_by_reason": report.get("dropped_by_reason", {}),
                    "prepared_as_paper": use.prepared}
    return out


def _prepared_views(cache_dir: Path, how: dict[str, Any]) -> dict[str, Any]:
    """The views a finished cache holds (view key -> spec), to be kept when views are added; a ValueError when it
    was prepared another way (``how``: detector, fallback, multi-face policy), which adding views would change."""

    info = cache_dir / "info.json"
    if not (cache_dir / "meta.npz").is_file() or not info.is_file():
        return {}
    settings = json.loads(info.read_text()).get("settings") or {}
    done = {"detector": settings.get("detector"), "fallback_detector": settings.get("fallback_detector"),
            "multi_face": settings.get("multi_face", "largest")}
    if settings and done != how:
        differ = ", ".join(f"{k} {done[k]!r} (needed: {how[k]!r})" for k in how if done[k] != how[k])
        raise ValueError(f"{cache_dir}: prepared with {differ}; choose another --cache-dir")
    return {(spec := PreprocessSpec.from_dict(d)).view_key: spec for d in settings.get("specs", [])}


def _stage_run(exp: Experiment, st: Stage, run_dir: Path, cache: str, fold: str, init: str | None, extra: list[str],
               scale: float, log=print) -> dict[str, Any]:
    """Train one stage (skipped when finished, resumed when started); returns its record."""
    done = run_dir / "stage.json"
    over = [f"data.cache={cache}", f"data.protocol={st.protocol}", f"data.train_split={_fill(st.train_split, fold)}",
            f"data.val_split={_fill(st.val_split, fold) or 'null'}", *stage_overrides(exp, st)]
    if init:
        over.append(f"init_from={init}")
    over += scaled_overrides(st.recipe, over, scale) + list(extra)
    if done.is_file():
        rec = json.loads(done.read_text())
        if Path(rec["final"]).is_file():
            same = rec.get("overrides") == over
            log(f"stage {st.name}{' ' + fold if fold else ''}: finished ({rec['final']})"
                + ("" if same else f"; trained with other settings (remove {run_dir} to train it again)"))
            return rec
    log(f"stage {st.name}{' ' + fold if fold else ''}: agekit train --recipe {st.recipe} --out {run_dir} "
        + " ".join(f"--set {shlex.quote(o)}" for o in over))
    res = train(st.recipe, run_dir, overrides=over, resume=True)
    card = res.card or {}
    rec = {"stage": st.name, "fold": fold, "recipe": st.recipe, "overrides": over, "final": str(res.final),
           "train_rows": (card.get("data") or {}).get("train_rows"), "epochs": card.get("epochs"),
           "steps": card.get("steps"), "train_seconds": card.get("train_seconds"),
           "val_metrics": card.get("val_metrics")}
    done.write_text(json.dumps(rec, indent=1, default=str))
    return rec


def run_experiment(name: str, data_root: str | Path, out: str | Path, *, epochs_scale: float = 1.0,
                   overrides: list[str] | None = None, detector: str | None = None, workers: int = 2,
                   limit: int | None = None, device: str | None = None, cache_root: str | Path | None = None,
                   on: str | None = None, command: str | None = None, ca_def: str | None = None,
                   log: Callable[[str], Any] = print) -> dict[str, Any]:
    """Run experiment ``name`` end to end (resumable) and write ``OUT/results.{md,json}``; returns the results.

    ``on``: run the chain on that dataset instead of the paper's (:func:`on_dataset`). ``ca_def``: CA(n) counts
    |error| <= n ("le") or < n ("lt") instead of the paper's definition (the table says so)."""

    exp = get_experiment(name, on)
    if ca_def and check_ca_def(ca_def) != exp.ca_def:
        exp = dataclasses.replace(exp, ca_def=ca_def, differences=exp.differences + (
            f"--ca-def {ca_def}: {CA_DEFINITIONS[ca_def]}; the paper's: {CA_DEFINITIONS[exp.ca_def]}",))
    data_root, out = Path(data_root), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    caches = prepare_datasets(exp, data_root, Path(cache_root) if cache_root else out / "caches",
                              detector=detector, workers=workers, limit=limit, overrides=overrides, log=log)
    extra = list(overrides or [])
    last = exp.test_stage
    test_cache = PreparedCache(caches[last.dataset]["cache"])
    folds = _folds(test_cache, last.protocol, exp.test_split)
    if not folds:
        raise ValueError(f"{test_cache.root}: protocol {last.protocol!r} has no split matching {exp.test_split!r}")
    records: list[dict[str, Any]] = []
    shared_init: str | None = None
    for st in exp.stages:
        if st.per_fold:
            continue
        rec = _stage_run(exp, st, out / "runs" / st.name, caches[st.dataset]["cache"], "", shared_init, extra,
                         epochs_scale, log)
        records.append(rec)
        shared_init = rec["final"]
    fold_results = []
    for fold in folds:
        init, final = shared_init, shared_init
        for st in exp.stages:
            if not st.per_fold:
                continue
            rec = _stage_run(exp, st, out / "runs" / st.name / (fold or "all"), caches[st.dataset]["cache"], fold,
                             init, extra, epochs_scale, log)
            records.append(rec)
            init = final = rec["final"]
        split = _fill(exp.test_split, fold)
        rep = evaluate(final, test_cache.root, split, last.protocol, flip=exp.flip, ten_view=exp.ten_view,
                       device=device, ca_def=exp.ca_def)  # `agekit evaluate CKPT --out DIR` draws the plots too
        fold_dir = out / "eval" / (fold or "all")
        fold_dir.mkdir(parents=True, exist_ok=True)
        (fold_dir / "report.json").write_text(json.dumps(rep, indent=1, default=str))
        gens = _generations(exp, Path(final), rep, test_cache.root, split, last.protocol, device)
        values = {}
        for f in exp.figures:
            src = gens.get(f"gen{f.generation}") if f.generation else None
            values[f.metric] = src[f.metric] if src is not None else _metric(rep["metrics"], f.metric)
        fold_results.append({"fold": fold or "all", "split": split, "n": rep["n_samples"], "checkpoint": final,
                             **values, **({"generations": gens} if gens else {})})
        log(f"fold {fold or 'all'}: " + ", ".join(f"{f.metric} {fold_results[-1][f.metric]}" for f in exp.figures))
    results = _aggregate(exp, fold_results, records, caches, epochs_scale, extra, detector, test_cache)
    results["command"] = command
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (out / "results.md").write_text(results_markdown(results))
    return results


def _generations(exp: Experiment, final: Path, rep: dict, cache_root, split: str, protocol: str,
                 device: str | None) -> dict[str, dict[str, float | None]]:
    """LRN: the figures' metrics of every refinery generation next to ``final`` (``gen1`` ... ``genT``)."""
    if not re.fullmatch(r"gen\d+", final.parent.name):
        return {}
    out = {}
    for ckpt in sorted(final.parent.parent.glob("gen*/final.safetensors"), key=lambda p: int(p.parent.name[3:])):
        r = rep if ckpt == final else evaluate(ckpt, cache_root, split, protocol, flip=exp.flip,
                                                 ten_view=exp.ten_view, device=device, ca_def=exp.ca_def)
        out[ckpt.parent.name] = {f.metric: _metric(r["metrics"], f.metric) for f in exp.figures}
    return out


def _aggregate(exp: Experiment, folds: list[dict], records: list[dict], caches: dict, scale: float,
               extra: list[str], detector: str | None, test_cache) -> dict[str, Any]:
    figures, differences = [], list(exp.differences)
    for f in exp.figures:
        kept = [r for r in folds if r[f.metric] is not None]
        vals = np.array([r[f.metric] for r in kept], dtype=np.float64) * f.unit
        n = np.array([r["n"] for r in kept], dtype=np.float64)
        # pooled (leave-one-person-out): the mean over all test images, each fold weighted by its images
        mean = (float((vals * n).sum() / n.sum()) if exp.pooled else float(vals.mean())) if vals.size else None
        figures.append({
            "metric": f.metric, "definition": f.definition, "paper": f.paper, "where": f.where,
            "ours_mean": mean, "ours_std": float(vals.std(ddof=1)) if vals.size > 1 else 0.0 if vals.size else None,
            "folds": int(vals.size), "pooled": exp.pooled,
        })
        if not vals.size:
            differences.append(f"{f.metric}: not measured, the test images lack the labels it needs"
                               + (" (the apparent-age votes' std)" if f.metric == "epsilon_error" else ""))
    differences += list(exp.model_notes)
    if exp.border != "constant":
        differences.append("crops that reach past a photo repeat its edge pixels (views '..._edge'), where the "
                           "papers' code pads with black")
    if scale != 1.0:
        differences.insert(0, f"a short run: every stage's epochs and schedule scaled by {scale:g} (--epochs-scale)")
    if extra:
        differences.insert(0, "settings changed on every stage: " + ", ".join(extra))
    for key, _c in caches.items():
        use = exp.datasets[key]
        det = detector_for(detector, key)
        if det and det != use.detector:
            differences.append(f"{key}: faces prepared with detector {det!r} instead of {use.detector!r}")
    if exp.test_stage.dataset == "adience":

        differences += check_fold_sizes(test_cache.splits(exp.test_stage.protocol))
    return {
        "experiment": exp.name, "paper": exp.paper, "title": exp.title, "protocol": exp.protocol,
        "ca_definition": exp.ca_def, "epochs_scale": scale, "overrides": extra, "on": exp.on,
        "figures": figures, "folds": folds, "stages": records, "datasets": caches,
        "test_images": int(sum(r["n"] for r in folds)), "differences": differences,
    }


def _num(x: float | None, unit: float) -> str:
    if x is None:
        return "n/a"
    return f"{x:.2f}" if unit != 1.0 or abs(x) >= 1 else f"{x:.3f}"


def _cell(text: str) -> str:
    """``text`` for a Markdown table cell (its ``|`` escaped)."""
    return str(text).replace("|", "\\|")


def results_markdown(res: dict[str, Any]) -> str:
    """The results table of :func:`run_experiment` as Markdown."""
    exp = get_experiment(res["experiment"])
    units = {f.metric: f.unit for f in exp.figures}
    pooled = any(f.get("pooled") for f in res["figures"])
    ours_head = "ours (all test images pooled; +- std over folds)" if pooled else "ours (mean +- std over folds)"
    lines = [f"# {res['experiment']}: {res['title']}", "", f"Paper: {res['paper']}. Protocol: {res['protocol']}.", ""]
    if res.get("command"):
        lines += [f"Command: `{res['command']}`", ""]
    lines += [f"| metric | definition | paper | {ours_head} | folds |", "|---|---|---|---|---|"]
    for f in res["figures"]:
        u = units.get(f["metric"], 1.0)
        ours = "n/a" if f["ours_mean"] is None else f"{_num(f['ours_mean'], u)} +- {_num(f['ours_std'], u)}"
        lines.append(f"| {f['metric']} | {_cell(f['definition'])} | {_num(f['paper'], u)} ({_cell(f['where'])}) | "
                     f"{ours} | {f['folds']} |")
    lines += ["", f"Test images: {res['test_images']} over {len(res['folds'])} fold(s); the standard deviation is the "
              "sample standard deviation over the folds.", "", "## Per fold", "",
              "| fold | test images | " + " | ".join(f["metric"] for f in res["figures"]) + " |",
              "|---|---|" + "---|" * len(res["figures"])]
    for r in res["folds"]:
        lines.append(f"| {r['fold']} | {r['n']} | " + " | ".join(
            _num(None if r[f['metric']] is None else r[f['metric']] * units.get(f["metric"], 1.0),
                 units.get(f["metric"], 1.0)) for f in res["figures"]) + " |")
    gens = sorted({g for r in res["folds"] for g in r.get("generations", {})}, key=lambda g: int(g[3:]))
    if gens:
        lines += ["", "## Per refinery generation (mean over folds)", "",
                  "| generation | " + " | ".join(f["metric"] for f in res["figures"]) + " |",
                  "|---|" + "---|" * len(res["figures"])]
        for g in gens:
            cells = []
            for f in res["figures"]:
                rows = [r for r in res["folds"]
                        if g in r.get("generations", {}) and r["generations"][g][f["metric"]] is not None]
                v = [r["generations"][g][f["metric"]] for r in rows]
                u = units.get(f["metric"], 1.0)
                mean = np.average(v, weights=[r["n"] for r in rows]) if pooled and v else np.mean(v) if v else None
                cells.append(_num(None if mean is None else float(mean) * u, u))
            lines.append(f"| t = {g[3:]} | " + " | ".join(cells) + " |")
    lines += ["", "## Training stages", "", "| stage | fold | recipe | training images | epochs | steps | seconds |",
              "|---|---|---|---|---|---|---|"]
    for s in res["stages"]:
        lines.append(f"| {s['stage']} | {s['fold'] or '-'} | {s['recipe']} | {s['train_rows']} | {s['epochs']} | "
                     f"{s['steps']} | {s['train_seconds']} |")
    lines += ["", "## Data", "", "Every image the dataset lists is counted: records found, records refused by the "
              "dataset's filters (with the reasons), images kept and images dropped by the face pipeline (with the "
              "reasons), and images kept by the fallback detector.", "",
              "| dataset | records | refused | images kept | dropped | by the fallback | faces in the cache | detector "
              "| preparation |", "|---|---|---|---|---|---|---|---|---|"]
    for k, c in res["datasets"].items():
        n = c.get("counts") or {}

        def why(total, reasons):
            return "-" if total is None else f"{total}" + (" (" + "; ".join(f"{r}: {v}" for r, v in reasons.items())
                                                           + ")" if reasons else "")
        det = c["detector"] + (f", fallback {c['fallback']}" if c.get("fallback") else "") + (
            f", multi-face {c['multi_face']}" if c.get("multi_face", "largest") != "largest" else "")
        lines.append(f"| {k} | {n.get('records', '-')} | {why(n.get('bad_records'), c.get('bad_by_reason'))} | "
                     f"{n.get('images_kept', '-')} | {why(n.get('images_dropped'), c.get('dropped_by_reason'))} | "
                     f"{n.get('images_from_fallback', 0 if c.get('fallback') else '-')} | {c['rows']} | {det} | "
                     f"{_cell(c['prepared_as_paper'])} |")
    lines += ["", "## Known differences from the paper", ""] + [f"- {d}" for d in res["differences"]]
    return "\n".join(lines) + "\n"
