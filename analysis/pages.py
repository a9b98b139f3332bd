"""One function per book page: features → findings → claims → figure, returned as a :class:`PageResult`.

The notebooks call these with their papermill parameters and add only prose. Page ids are
the notebook file names in ``book/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import findings, images, plots
from .metrics import first_layer_above
from .claims import (
    EXPECTED_ARTIFACTS,
    Claim,
    Verdict,
    judge_attention,
    judge_layer_onset,
    judge_outliers,
    judge_redundancy,
    judge_registers,
    judge_size_trend,
    judge_training_onset,
)
from .features import Features, extract
from .models import ModelSpec
from .report import PageResult, default_results_dir

#: The finding pages in book order; the claims page reads their results in this order.
FINDINGS = [
    "attention_maps",
    "norm_histogram",
    "layer_dependence",
    "model_size",
    "training_time",
    "redundancy",
    "information_probes",
    "registers",
    "test_time_registers",
    "object_discovery",
]
#: Every executed page of the book, in build order (claims after the findings it reads).
PAGES = [*FINDINGS, "claims", "summary", "your_image", "quality"]


@dataclass(frozen=True)
class Inputs:
    """What every page shares: the image sample, resolution, seed and where weights and cache live."""

    image_source: str = "builtin"
    n_images: int | None = 8
    resolution: int = 224
    seed: int = 0
    weights_dir: str | None = None
    cache_dir: str | None = None
    batch_size: int = 4

    def features(self, spec: str, weights_file: str | None = None) -> Features:
        return extract(
            spec,
            self.image_source,
            self.n_images,
            self.resolution,
            seed=self.seed,
            weights_dir=self.weights_dir,
            weights_file=weights_file,
            cache_dir=self.cache_dir,
            batch_size=self.batch_size,
        )


def _load(models: list[str], inputs: Inputs) -> dict[str, Features]:
    if not models:
        raise ValueError("no models given: pass at least one timm model name")
    return {spec: inputs.features(spec) for spec in models}


def _has_outliers(row) -> bool:
    return bool(row.bimodal and 0 < row.outlier_share <= 0.10)


def _paper_note(spec: str) -> str:
    name = ModelSpec.parse(spec).name
    return EXPECTED_ARTIFACTS[name][1] if name in EXPECTED_ARTIFACTS else "the paper does not test this model"


def _primary(summary: pd.DataFrame) -> pd.Series:
    """The first pretrained model of a summary (or the first model when all are random)."""
    pretrained = summary[~summary.random_weights]
    return (pretrained if len(pretrained) else summary).iloc[0]


def norm_histogram(models: list[str], inputs: Inputs, threshold: float = 150.0, adaptive: bool = True) -> PageResult:
    """Output patch-norm distributions, the fixed and adaptive cutoffs, and where outliers sit."""
    feats = _load(models, inputs)
    summary = findings.norm_summary(feats, threshold, adaptive)
    claims = []
    for row in summary.itertuples():
        verdict, reason = judge_outliers(ModelSpec.parse(row.model).name, row.random_weights, row.bimodal, row.outlier_share)
        claims.append(Claim(
            "norm_histogram",
            f"{plots.short_name(row.model)} has {'a few' if EXPECTED_ARTIFACTS.get(ModelSpec.parse(row.model).name, (True,))[0] else 'no'} high-norm output patch tokens.",
            _paper_note(row.model) + " (Fig. 3)",
            f"{row.outlier_share:.2%} of output patch tokens above the {row.cutoff_rule} cutoff "
            f"{row.cutoff:.0f}; max/median norm {row.max_over_median:.0f}x; {row.share_above_threshold:.2%} above {threshold:g}",
            verdict, feats[row.model].provenance.label(), reason,
        ))
    primary = _primary(summary)
    primary_feats = feats[primary.model]
    positions, stability = None, {"max_position_share": 0.0, "distinct_positions": 0, "outlier_tokens": 0}
    if np.isfinite(primary.cutoff):
        positions = findings.position_frequency(primary_feats, primary.cutoff)
        stability = findings.position_stability(primary_feats, primary.cutoff)
    output = pd.concat(
        [frame.patch_norms(-1)[["image_id", "norm"]].assign(model=spec) for spec, frame in feats.items()]
    )
    provenances = [f.provenance for f in feats.values()]
    figure = plots.norm_histogram(output, summary, positions, provenances)
    numbers = {
        "n_images": int(primary.images),
        "primary_model": plots.short_name(primary.model),
        "primary_share": float(primary.outlier_share),
        "primary_cutoff": float(primary.cutoff) if np.isfinite(primary.cutoff) else 0.0,
        "primary_median": float(primary.median_norm),
        "primary_max": float(primary.max_norm),
        "position_max_share": stability["max_position_share"],
        "position_count": stability["distinct_positions"],
        "outlier_tokens": stability["outlier_tokens"],
    }
    return PageResult("norm_histogram", summary, claims, figure, provenances, numbers)


def _grid(patches: pd.DataFrame, column: str) -> np.ndarray:
    return patches.pivot(index="row", columns="col", values=column).to_numpy()


def attention_maps(models: list[str], inputs: Inputs, n_show: int = 4, threshold: float = 150.0,
                   adaptive: bool = True) -> PageResult:
    """Last-layer CLS attention per model on the same images, high-norm patches marked."""
    feats = _load(models, inputs)
    summary = findings.norm_summary(feats, threshold, adaptive)
    rows, claims, maps, outliers = [], [], {}, {}
    first = next(iter(feats.values()))
    shown = [img for img in first.meta["images"]][: max(1, n_show)]
    for row in summary.itertuples():
        frame = feats[row.model]
        share = findings.attention_summary(frame, row.cutoff)
        high = frame.patches[["image_id", "token"]].assign(high=frame.patches.norm > row.cutoff)
        per_head = frame.attention[frame.attention.kind == "patch"].merge(high, on=["image_id", "token"])
        for head, group in per_head.groupby("head"):
            rows.append({"model": row.model, "head": str(head), "outlier_share": share["outlier_share"],
                         "attention_on_outliers": float(group.attention[group.high].sum() / group.attention.sum())})
        rows.append({"model": row.model, "head": "mean", **share})
        name = ModelSpec.parse(row.model).name
        expected = EXPECTED_ARTIFACTS.get(name, (None, ""))[0]
        if expected is False:
            verdict, reason = judge_outliers(name, row.random_weights, row.bimodal, row.outlier_share)
            statement = f"{plots.short_name(row.model)} has clean attention maps: no high-norm patches."
        else:
            verdict, reason = judge_attention(row.random_weights, share["outlier_share"], share["attention_on_outliers"])
            if expected is None and verdict is not Verdict.NOT_TESTABLE:
                verdict, reason = Verdict.NOT_TESTABLE, "the paper makes no statement about this model; " + reason
            statement = f"{plots.short_name(row.model)}'s last-layer CLS attention concentrates on high-norm patches."
        claims.append(Claim(
            "attention_maps", statement, _paper_note(row.model) + " (Fig. 2)",
            f"{share['attention_on_outliers']:.1%} of CLS attention on the {share['outlier_share']:.1%} high-norm patches",
            verdict, frame.provenance.label(), reason,
        ))
        by_image = {i: g for i, g in frame.patches.groupby("image_id")}
        maps[row.model] = [_grid(by_image[img["image_id"]], "cls_attention") for img in shown]
        outliers[row.model] = [_grid(by_image[img["image_id"]], "norm") > row.cutoff for img in shown]
    pictures = [images.display_crop(images.record_from_origin(img["image_id"], img["origin"]), inputs.resolution)
                for img in shown]
    provenances = [f.provenance for f in feats.values()]
    figure = plots.attention_maps(pictures, maps, outliers, [img["image_id"] for img in shown], provenances)
    table = pd.DataFrame(rows)
    mean_rows = table[table["head"] == "mean"].reset_index(drop=True)
    primary = mean_rows.iloc[int(_primary(summary).name)]
    numbers = {
        "primary_model": plots.short_name(primary.model),
        "primary_attention_share": float(primary.attention_on_outliers),
        "primary_outlier_share": float(primary.outlier_share),
    }
    return PageResult("attention_maps", table, claims, figure, provenances, numbers)


def layer_dependence(model: str, inputs: Inputs, threshold: float = 150.0, adaptive: bool = True) -> PageResult:
    """Per-block patch-norm statistics and the first block where high-norm tokens appear."""
    feats = _load([model], inputs)[model]
    cutoff = findings.outlier_cutoff(feats, threshold, adaptive)
    table = findings.layer_table(feats, cutoff.value).assign(model=model)

    first = first_layer_above(table.max_norm.to_numpy(), cutoff.value) if np.isfinite(cutoff.value) else None
    verdict, reason = judge_layer_onset(feats.provenance.is_random, first, feats.depth)
    claim = Claim(
        "layer_dependence", "High-norm tokens appear only from a middle layer on, not in early layers.",
        "from about block 15 of 40 in DINOv2 ViT-g (Fig. 4a)",
        f"first block with a token above the cutoff ({cutoff.value:.0f}): "
        + (f"{first} of {feats.depth}" if first is not None else "none"),
        verdict, feats.provenance.label(), reason,
    )
    figure = plots.layer_norms(table, cutoff.value, first, [feats.provenance])
    numbers = {
        "model_name": plots.short_name(model),
        "depth": feats.depth,
        "first_layer": -1 if first is None else first,
        "first_layer_relative": float("nan") if first is None else first / feats.depth,
        "cutoff": float(cutoff.value) if np.isfinite(cutoff.value) else 0.0,
        "final_max": float(table.max_norm.iloc[-1]),
        "final_median": float(table.median_norm.iloc[-1]),
    }
    return PageResult("layer_dependence", table, [claim], figure, [feats.provenance], numbers)


def model_size(models: list[str], inputs: Inputs, threshold: float = 150.0, adaptive: bool = True) -> PageResult:
    """Outlier share and norm spread for the sizes of one family, small → large."""
    feats = _load(models, inputs)
    summary = findings.norm_summary(feats, threshold, adaptive)
    summary["has_outliers"] = [_has_outliers(r) for r in summary.itertuples()]
    verdict, reason = judge_size_trend(list(zip(summary.model, summary.random_weights, summary.has_outliers)))
    measured = "; ".join(f"{plots.short_name(r.model)}: {r.outlier_share:.2%}" for r in summary.itertuples())
    claim = Claim(
        "model_size", "High-norm tokens appear only in the larger models of a family.",
        "only in the three largest of six DINOv2 sizes (L, H, g) trained by the authors (Fig. 4c)",
        measured, verdict, "; ".join(f.provenance.label() for f in feats.values()), reason,
    )
    provenances = [f.provenance for f in feats.values()]
    figure = plots.size_bars(summary, provenances)
    numbers = {"n_models": len(summary), "n_pretrained": int((~summary.random_weights).sum())}
    return PageResult("model_size", summary, [claim], figure, provenances, numbers)


def training_time(model: str, checkpoints: list[str], training_fractions: list[float], inputs: Inputs,
                  threshold: float = 150.0, adaptive: bool = True) -> PageResult:
    """Outlier share along a sequence of checkpoints of one training run.

    ``checkpoints``: each ``"random"`` (initialisation), ``"pretrained"`` (the resolver's weights
    for ``model``) or a path to a weight file; ``training_fractions``: the share of training each
    checkpoint had seen (0 … 1), same length.
    """
    if len(checkpoints) != len(training_fractions):
        raise ValueError(f"{len(checkpoints)} checkpoints but {len(training_fractions)} training fractions")
    if not checkpoints:
        raise ValueError("no checkpoints given: pass e.g. ['random', 'pretrained'] or weight files")
    rows, provenances = [], []
    for checkpoint, fraction in zip(checkpoints, training_fractions):
        if checkpoint == "random":
            feats, label = inputs.features(f"random:{model}"), "init (random)"
        elif checkpoint == "pretrained":
            feats, label = inputs.features(model), "released weights"
        else:
            feats, label = inputs.features(model, weights_file=checkpoint), Path(checkpoint).stem
        summary = findings.norm_summary({model: feats}, threshold, adaptive).iloc[0]
        rows.append({"checkpoint": checkpoint, "label": label, "training_fraction": float(fraction),
                     "random_weights": feats.provenance.is_random, "outlier_share": summary.outlier_share,
                     "has_outliers": _has_outliers(summary), "max_over_median": summary.max_over_median})
        provenances.append(feats.provenance)
    table = pd.DataFrame(rows).sort_values("training_fraction").reset_index(drop=True)
    verdict, reason = judge_training_onset(list(zip(table.training_fraction, table.has_outliers)))
    claim = Claim(
        "training_time", "High-norm tokens appear only after a substantial part of training.",
        "only after about one third of DINOv2 ViT-g training (Fig. 4b); intermediate checkpoints are not public",
        "; ".join(f"{r.label} @ {r.training_fraction:.0%}: {r.outlier_share:.2%}" for r in table.itertuples()),
        verdict, "; ".join(p.label() for p in provenances), reason,
    )
    figure = plots.training_curve(table, provenances)
    numbers = {"n_checkpoints": len(table)}
    return PageResult("training_time", table, [claim], figure, provenances, numbers)


def redundancy(model: str, inputs: Inputs, threshold: float = 150.0, adaptive: bool = True) -> PageResult:
    """Neighbour cosine after patch embedding, high-norm vs normal patches."""
    feats = _load([model], inputs)[model]
    cutoff = findings.outlier_cutoff(feats, threshold, adaptive)
    table = findings.redundancy_table(feats, cutoff.value).assign(model=model)
    summary = findings.redundancy_summary(table)
    verdict, reason = judge_redundancy(feats.provenance.is_random, summary["n_high"], summary["median_high"],
                                       summary["median_normal"], summary["auc"])
    claim = Claim(
        "redundancy", "High-norm tokens sit on patches that are very similar to their 4 neighbours.",
        "outliers have markedly higher neighbour cosine after patch embedding (Fig. 5a)",
        f"median neighbour cosine {summary['median_high']:.2f} (high-norm, n={summary['n_high']}) vs "
        f"{summary['median_normal']:.2f} (normal); ROC AUC {summary['auc']:.2f}",
        verdict, feats.provenance.label(), reason,
    )
    figure = plots.redundancy_density(table, summary, [feats.provenance])
    numbers = {"model_name": plots.short_name(model), **{k: float(v) for k, v in summary.items()}}
    return PageResult("redundancy", table, [claim], figure, [feats.provenance], numbers)


def registers(models: list[str], inputs: Inputs, threshold: float = 150.0, adaptive: bool = True) -> PageResult:
    """A model without and with registers: patch norms and where the high norms went."""
    if len(models) != 2:
        raise ValueError(f"registers compares exactly two models (without, with registers), got {len(models)}")
    feats = _load(models, inputs)
    plain, with_registers = (feats[m] for m in models)
    if with_registers.meta["num_registers"] < 1:
        raise ValueError(f"{models[1]} has no register tokens; pass e.g. a *_reg4_* model second")
    summary = findings.norm_summary(feats, threshold, adaptive)
    plain_row, reg_row = summary.iloc[0], summary.iloc[1]
    ratio = float(reg_row.register_norm_median / reg_row.median_norm)
    verdict, reason = judge_registers(bool(summary.random_weights.any()), _has_outliers(plain_row),
                                      _has_outliers(reg_row), ratio)
    claim = Claim(
        "registers", "With registers the high-norm patch tokens vanish; the registers carry the high norms.",
        "DINOv2 with 4 registers has no outlier patches (Sec. 3)",
        f"outliers without registers {plain_row.outlier_share:.2%}, with registers {reg_row.outlier_share:.2%}; "
        f"median register norm {ratio:.1f}x median patch norm",
        verdict, "; ".join(f.provenance.label() for f in feats.values()), reason,
    )
    output = pd.concat([f.patch_norms(-1)[["norm"]].assign(model=spec) for spec, f in feats.items()])
    prefix = pd.concat([findings.register_norms(f).assign(model=plots.short_name(spec)) for spec, f in feats.items()])
    provenances = [f.provenance for f in feats.values()]
    figure = plots.register_comparison(output, prefix, provenances)
    numbers = {"plain_share": float(plain_row.outlier_share), "registers_share": float(reg_row.outlier_share),
               "register_ratio": ratio}
    return PageResult("registers", summary, [claim], figure, provenances, numbers)


def claims(results_dir: str | None = None) -> PageResult:
    """All claims of the finding pages, from their saved parquet files."""
    folder = Path(results_dir) if results_dir else default_results_dir()
    frames = [pd.read_parquet(folder / f"{page}_claims.parquet") for page in FINDINGS
              if (folder / f"{page}_claims.parquet").is_file()]
    if not frames:
        raise FileNotFoundError(f"no claims in {folder}: run the finding pages first (python -m analysis build)")
    table = pd.concat(frames, ignore_index=True)
    figure = plots.verdict_chart(table)
    plt.close(figure)
    counts = table.verdict.value_counts()
    numbers = {
        "n_claims": len(table),
        "n_reproduced": int(counts.get(str(Verdict.REPRODUCED), 0)),
        "n_not_reproduced": int(counts.get(str(Verdict.NOT_REPRODUCED), 0)),
        "n_not_testable": int(counts.get(str(Verdict.NOT_TESTABLE), 0)),
        "missing_pages": ", ".join(p for p in FINDINGS if not (folder / f"{p}_claims.parquet").is_file()) or "none",
    }
    return PageResult("claims", table, [], figure, [], numbers)


def quality(bench_dir: str | None = None) -> PageResult:
    """The benchmark's ratios against their targets, and throughput per model (from ``python -m analysis bench``)."""
    folder = Path(bench_dir) if bench_dir else Path.cwd() / "_build" / "bench"
    ratios_path, throughput_path = folder / "ratios.parquet", folder / "throughput.parquet"
    measured = ratios_path.is_file() and throughput_path.is_file()
    ratios = pd.read_parquet(ratios_path) if measured else pd.DataFrame(columns=["metric", "value", "target", "passed", "detail"])
    throughput = pd.read_parquet(throughput_path) if measured else pd.DataFrame(
        columns=["model", "images_per_s", "seconds", "measured"])
    figure = plots.benchmark(ratios, throughput)
    plt.close(figure)
    numbers = {
        "bench_status": "measured" if measured else f"not measured for this build (run `make bench`; looked in {folder})",
        "n_passed": int(ratios.passed.sum()) if measured else 0,
        "n_targets": len(ratios),
        "paper_minutes": float(throughput.seconds.sum() / 60) if measured else 0.0,
    }
    return PageResult("quality", ratios, [], figure, [], numbers)


def test_time_registers(model: str, inputs: Inputs, threshold: float = 150.0, adaptive: bool = True,
                        top_k: int = 4, n_show: int = 4) -> PageResult:
    """Find the register neurons of ``model`` and move them onto one extra token at inference."""
    import torch

    from . import intervention
    from .features import frames_from_capture
    from .hooks import capture_tokens
    from .models import load_model

    before = _load([model], inputs)[model]
    cutoff = findings.outlier_cutoff(before, threshold, adaptive)
    network, provenance = load_model(model, img_size=inputs.resolution, weights_dir=inputs.weights_dir, seed=inputs.seed)
    records = [images.record_from_origin(i["image_id"], i["origin"]) for i in before.meta["images"]]
    transform = images.make_transform(network, inputs.resolution)
    pixels = torch.stack([transform(r.load()) for r in records])
    ids = [r.image_id for r in records]

    patch_norms = torch.tensor(before.patches.sort_values(["image_id", "token"]).set_index("image_id")
                               .loc[ids].norm.to_numpy()).reshape(len(ids), -1)
    outlier_mask = patch_norms > cutoff.value
    activations = intervention.mlp_activations(network, pixels, range(len(network.blocks)))
    neurons = intervention.find_register_neurons(activations, outlier_mask, network.num_prefix_tokens, top_k=top_k)
    with torch.inference_mode():
        logits_before = network(pixels)
    with intervention.test_time_register(network, neurons) as register_index:
        capture = capture_tokens(network, pixels, keep_output=True)
        with torch.inference_mode():  # the classifier on the same pass's output tokens
            logits_after = network.forward_head(capture.output)
    after = frames_from_capture(capture, ids)
    after_patches = after["patches"]
    share_before = float(outlier_mask.float().mean())
    share_after = float((after_patches.norm > cutoff.value).mean()) if np.isfinite(cutoff.value) else 0.0
    register_norm = float(capture.block_norms[:, -1, register_index].median())
    same_top1 = int((logits_before.argmax(1) == logits_after.argmax(1)).sum())

    from .claims import judge_test_time_registers

    verdict, reason = judge_test_time_registers(provenance.is_random, share_before, share_after, len(neurons))
    neuron_text = ", ".join(f"block {n.block} unit {n.neuron} ({n.mean_at_outliers:.0f} vs {n.mean_elsewhere:.1f})"
                            for n in neurons) or "none found"
    claim = Claim(
        "test_time_registers",
        "Moving a few register neurons' activations onto one extra token at inference removes the high-norm patches.",
        "Jiang et al. 2025 (arXiv 2506.08010): outliers vanish without retraining",
        f"outliers {share_before:.2%} -> {share_after:.2%} with neurons {neuron_text}; extra token norm "
        f"{register_norm:.0f}; top-1 unchanged on {same_top1}/{len(ids)} images",
        verdict, provenance.label(), reason,
    )
    table = pd.DataFrame([{"block": n.block, "neuron": n.neuron, "mean_at_outliers": n.mean_at_outliers,
                           "mean_elsewhere": n.mean_elsewhere, "score": n.score} for n in neurons],
                         columns=["block", "neuron", "mean_at_outliers", "mean_elsewhere", "score"])
    shown = ids[: max(1, n_show)]
    by_image_before = dict(tuple(before.patches.groupby("image_id")))
    by_image_after = dict(tuple(after_patches.groupby("image_id")))
    released, moved = f"{plots.short_name(model)} as released", f"{plots.short_name(model)} + test-time register"
    maps = {
        released: [_grid(by_image_before[i], "cls_attention") for i in shown],
        moved: [_grid(by_image_after[i], "cls_attention") for i in shown],
    }
    boxes = {
        released: [_grid(by_image_before[i], "norm") > cutoff.value for i in shown],
        moved: [_grid(by_image_after[i], "norm") > cutoff.value for i in shown],
    }
    pictures = [images.display_crop(records[ids.index(i)], inputs.resolution) for i in shown]
    figure = plots.attention_maps(pictures, maps, boxes, shown, [provenance])
    numbers = {"share_before": share_before, "share_after": share_after, "n_neurons": len(neurons),
               "register_norm": register_norm, "same_top1": same_top1, "n_images": len(ids),
               "model_name": plots.short_name(model)}
    return PageResult("test_time_registers", table, [claim], figure, [provenance], numbers)


def _token_pass(model: str, records: list, inputs: Inputs):
    """Output tokens ``(B, N, D)``, last-block patch norms ``(B, Np)`` and input pixels ``(B, 3, H, W)``."""
    from .hooks import capture_tokens
    from .models import load_model, patch_size

    network, provenance = load_model(model, img_size=inputs.resolution, weights_dir=inputs.weights_dir, seed=inputs.seed)
    images.check_resolution(inputs.resolution, patch_size(network))
    transform = images.make_transform(network, inputs.resolution)
    outputs, norms, pixels = [], [], []
    for _, batch in images.iter_batches(records, transform, inputs.batch_size):
        capture = capture_tokens(network, batch, keep_output=True)
        outputs.append(capture.output.numpy())
        norms.append(capture.patch_norms[:, -1].numpy())
        pixels.append(batch.numpy())
    return (np.concatenate(outputs), np.concatenate(norms), np.concatenate(pixels),
            network.num_prefix_tokens, patch_size(network), provenance)


def information_probes(model: str, inputs: Inputs, labelled_source: str = "digits", per_class: int = 20,
                       threshold: float = 150.0, adaptive: bool = True) -> PageResult:
    """Linear probes: local (position, pixels) and global (class) information in normal vs high-norm tokens."""
    from . import probes
    from .claims import judge_global_information, judge_local_information

    records = images.list_labelled_images(labelled_source, per_class, inputs.seed)
    output, norms, pixels, prefix, patch, provenance = _token_pass(model, records, inputs)
    high = norms > findings.cutoff_from_norms(norms, threshold, adaptive).value  # (B, Np)
    labels = np.array([r.label for r in records])
    rng = np.random.default_rng(inputs.seed)
    order = rng.permutation(len(records))
    train, test = np.sort(order[: len(order) // 2]), np.sort(order[len(order) // 2 :])
    patches = output[:, prefix:]  # (B, Np, D)
    patch_pix = probes.patch_pixels(pixels, patch)  # (B, Np, P)
    grid_width = inputs.resolution // patch
    positions = np.broadcast_to(np.arange(patches.shape[1]), high.shape)

    def tokens_of(image_ids, want_high, limit):
        mask = np.zeros_like(high)
        mask[image_ids] = high[image_ids] == want_high
        index = np.argwhere(mask)
        if len(index) > limit:
            index = index[np.sort(rng.choice(len(index), limit, replace=False))]
        return patches[index[:, 0], index[:, 1]], positions[index[:, 0], index[:, 1]], patch_pix[index[:, 0], index[:, 1]]

    train_tokens, train_positions, train_pixels = tokens_of(train, False, 8000)
    normal_tokens, normal_positions, normal_pixels = tokens_of(test, False, 3000)
    high_tokens, high_positions, high_pixels = tokens_of(test, True, 3000)
    position = probes.position_probe(train_tokens, train_positions, {"normal": (normal_tokens, normal_positions),
                                     "high-norm": (high_tokens, high_positions)}, grid_width, inputs.seed)
    pixel_error = probes.pixel_probe(train_tokens, train_pixels, {"normal": (normal_tokens, normal_pixels),
                                     "high-norm": (high_tokens, high_pixels)})

    with_outliers = np.flatnonzero(high.any(1) & ~high.all(1))
    n_global = len(with_outliers)
    accuracy = {"CLS": float("nan"), "normal patch": float("nan"), "high-norm patch": float("nan")}
    if n_global >= 4 and len(set(labels[with_outliers])) >= 2:
        chosen_high = np.array([np.argmax(np.where(high[i], norms[i], -np.inf)) for i in with_outliers])
        chosen_normal = np.array([rng.choice(np.flatnonzero(~high[i])) for i in with_outliers])
        features = {"CLS": output[with_outliers, 0],
                    "normal patch": patches[with_outliers, chosen_normal],
                    "high-norm patch": patches[with_outliers, chosen_high]}
        split = rng.permutation(n_global)
        fit, held = split[: n_global // 2], split[n_global // 2 :]
        for name, values in features.items():
            accuracy[name] = probes.class_probe(values[fit], labels[with_outliers][fit], values[held],
                                                labels[with_outliers][held], inputs.seed)

    local_verdict, local_reason = judge_local_information(
        provenance.is_random, len(high_tokens), position["normal"]["top1"], position["high-norm"]["top1"],
        pixel_error["normal"], pixel_error["high-norm"])
    global_verdict, global_reason = judge_global_information(
        provenance.is_random, n_global, accuracy["normal patch"], accuracy["high-norm patch"])
    claims = [
        Claim("information_probes", "High-norm tokens hold less local information (position, pixels) than normal tokens.",
              "DINOv2 ViT-g: position top-1 41.7% vs 22.8%, pixel error 18.38 vs 25.23 (Table 1)",
              f"position top-1 {position['normal']['top1']:.1%} (normal) vs {position['high-norm']['top1']:.1%} "
              f"(high-norm, n={len(high_tokens)}); pixel error {pixel_error['normal']:.2f} vs {pixel_error['high-norm']:.2f}",
              local_verdict, provenance.label(), local_reason),
        Claim("information_probes", "A single high-norm token predicts the image class better than a normal patch token.",
              "DINOv2 ViT-g on ImageNet: CLS 86.0%, normal patch 65.8%, high-norm patch 69.0% (Table 1)",
              f"on {labelled_source} ({n_global} images with an outlier): CLS {accuracy['CLS']:.1%}, "
              f"normal patch {accuracy['normal patch']:.1%}, high-norm patch {accuracy['high-norm patch']:.1%}",
              global_verdict, provenance.label(), global_reason),
    ]
    table = pd.DataFrame(
        [{"probe": "position top-1", "token": k, "value": v["top1"], "n": v["n"]} for k, v in position.items()]
        + [{"probe": "position distance (patches)", "token": k, "value": v["distance"], "n": v["n"]} for k, v in position.items()]
        + [{"probe": "pixel L2 error", "token": k, "value": v, "n": position[k]["n"]} for k, v in pixel_error.items()]
        + [{"probe": "class accuracy", "token": k, "value": v, "n": n_global} for k, v in accuracy.items()]
    )
    figure = plots.probe_bars(table, [provenance])
    numbers = {"model_name": plots.short_name(model), "n_images": len(records), "n_with_outliers": n_global,
               "labelled_source": str(labelled_source),
               "normal_top1": position["normal"]["top1"], "high_top1": position["high-norm"]["top1"],
               "normal_error": pixel_error["normal"], "high_error": pixel_error["high-norm"],
               "cls_accuracy": accuracy["CLS"], "normal_accuracy": accuracy["normal patch"],
               "high_accuracy": accuracy["high-norm patch"]}
    return PageResult("information_probes", table, claims, figure, [provenance], numbers)


def your_image(image: str, models: list[str], inputs: Inputs, threshold: float = 150.0, adaptive: bool = True) -> PageResult:
    """One image (a file path or ``builtin:<name>``) through each model: norms, attention, outliers."""
    from .claims import judge_outliers

    single = Inputs(image, None, inputs.resolution, inputs.seed, inputs.weights_dir, inputs.cache_dir, inputs.batch_size)
    feats = _load(models, single)
    summary = findings.norm_summary(feats, threshold, adaptive)
    first = next(iter(feats.values())).meta["images"][0]
    record = images.record_from_origin(first["image_id"], first["origin"])
    picture = images.display_crop(record, inputs.resolution)
    maps, boxes, norm_maps = {}, {}, {}
    for row in summary.itertuples():
        patches = feats[row.model].patches
        maps[row.model] = [_grid(patches, "cls_attention")]
        norm_maps[row.model] = _grid(patches, "norm")
        boxes[row.model] = [norm_maps[row.model] > row.cutoff]
    provenances = [f.provenance for f in feats.values()]
    figure = plots.single_image(picture, norm_maps, maps, boxes, provenances)
    claims = []
    for row in summary.itertuples():
        verdict, reason = judge_outliers(ModelSpec.parse(row.model).name, row.random_weights, row.bimodal, row.outlier_share)
        claims.append(Claim("your_image", f"{plots.short_name(row.model)} on this one image.", _paper_note(row.model),
                            f"{row.outlier_share:.2%} high-norm patches, max norm {row.max_norm:.0f}", verdict,
                            feats[row.model].provenance.label(),
                            reason + " (one image: an illustration, not a test)"))
    notes = "; ".join(first["notes"]) or "none"
    return PageResult("your_image", summary, claims, figure, provenances,
                      {"image_name": record.image_id, "conversion_notes": notes})


def summary(model: str, inputs: Inputs, threshold: float = 150.0, adaptive: bool = True) -> PageResult:
    """Four key figures of the study on one model, for a lecture slide (reuses the feature cache)."""
    from io import BytesIO

    from PIL import Image

    results = [
        norm_histogram([model], inputs, threshold, adaptive),
        attention_maps([model], inputs, n_show=4, threshold=threshold, adaptive=adaptive),
        layer_dependence(model, inputs, threshold, adaptive),
        test_time_registers(model, inputs, threshold, adaptive),
    ]
    panels = [np.asarray(Image.open(BytesIO(r.figure_png(dpi=90).data))) for r in results]
    topics = ["a. Output norms (paper: bimodal)", "b. CLS attention (paper: outliers light up)",
              "c. Norms by depth (paper: outliers from mid-depth)", "d. Test-time register (Jiang et al.: outliers vanish)"]
    titles = [f"{topic} - this run: {r.claims[0].verdict}" for topic, r in zip(topics, results)]
    figure = plots.slide(panels, titles, [r.provenances[0] for r in results[:1]])
    claims = [c for r in results for c in r.claims]
    for r in results:
        plt.close(r.figure)
    table = pd.DataFrame([c.as_row() for c in claims])
    return PageResult("summary", table, [], figure, results[0].provenances,
                      {"model_name": plots.short_name(model),
                       "verdicts": "; ".join(f"{t[3:]}: **{r.claims[0].verdict}**" for t, r in zip(topics, results))})


def object_discovery(models: list[str], inputs: Inputs, voc_root: str | None = None, voc_split: str | None = None,
                     n_discovery: int = 16, test_time_register: bool = True, threshold: float = 150.0,
                     adaptive: bool = True, k: int = 100) -> PageResult:
    """LOST CorLoc per model; with ``test_time_register`` also after moving the register neurons.

    ``voc_root``: a VOC-style folder (e.g. VOC2007); None builds the planted-object set in the cache folder.
    """
    import torch

    from . import discovery, intervention
    from .claims import judge_discovery
    from .hooks import capture_tokens
    from .models import load_model, patch_size

    source = "planted" if voc_root is None else str(voc_root)
    if voc_root is None:
        voc_root = discovery.planted_voc(Path(inputs.cache_dir or Path.cwd() / "_build" / "cache") / "planted_voc",
                                         n_discovery, inputs.seed)
    items = discovery.list_voc(voc_root, voc_split)
    items = [items[i] for i in sorted(np.random.default_rng(inputs.seed).permutation(len(items))[:n_discovery])]
    truth = [boxes for _, boxes in items]
    pictures = [images.read_image_file(path) for path, _ in items]
    scales = [(p.size[0] / inputs.resolution, p.size[1] / inputs.resolution) for p in pictures]
    rows, examples, provenances, claims = [], {}, [], []
    for spec in models:
        network, provenance = load_model(spec, img_size=inputs.resolution, weights_dir=inputs.weights_dir, seed=inputs.seed)
        provenances.append(provenance)
        patch = patch_size(network)
        images.check_resolution(inputs.resolution, patch)
        grid = (inputs.resolution // patch,) * 2
        transform = images.make_square_transform(network, inputs.resolution)
        pixels = torch.stack([transform(p) for p in pictures])

        def boxes_of(keys):
            return [discovery.patch_box_to_pixels(discovery.lost(keys[i], grid, k).box, patch, scales[i])
                    for i in range(len(items))]

        conditions = {"as released": boxes_of(discovery.last_block_keys(network, pixels))}
        if test_time_register and not provenance.is_random:
            norms = capture_tokens(network, pixels).patch_norms[:, -1]
            cutoff = findings.cutoff_from_norms(norms.numpy(), threshold, adaptive).value
            activations = intervention.mlp_activations(network, pixels, range(len(network.blocks)))
            neurons = intervention.find_register_neurons(activations, norms > cutoff, network.num_prefix_tokens)
            with intervention.test_time_register(network, neurons):
                conditions["test-time register"] = boxes_of(discovery.last_block_keys(network, pixels))
        for condition, predicted in conditions.items():
            rows.append({"model": spec, "condition": condition, "corloc": discovery.corloc(predicted, truth),
                         "images": len(items), "random_weights": provenance.is_random, "source": source})
            examples[f"{plots.short_name(spec)}, {condition}"] = predicted
        if "test-time register" in conditions:
            with_, without = rows[-1]["corloc"], rows[-2]["corloc"]
            verdict, reason = judge_discovery(False, with_, without, len(items))
        else:
            verdict, reason = judge_discovery(provenance.is_random, float("nan"), float("nan"), len(items))
        claims.append(Claim(
            "object_discovery", f"Removing the outliers improves LOST object discovery ({plots.short_name(spec)}).",
            "VOC07 CorLoc: DINOv2 35.3 -> 55.4 with registers; DINO 61.9 (Table 3)",
            "; ".join(f"{r['condition']}: CorLoc {r['corloc']:.1%}" for r in rows if r["model"] == spec) + f" on {source}",
            verdict, provenance.label(), reason))
        del network
    table = pd.DataFrame(rows)
    shown = min(4, len(items))
    figure = plots.discovery_examples(pictures[:shown], truth[:shown],
                                      {name: boxes[:shown] for name, boxes in examples.items()}, table, provenances)
    numbers = {"source": source, "n_images": len(items),
               "first_corloc": float(table.corloc.iloc[0]),
               "first_model": plots.short_name(models[0])}
    return PageResult("object_discovery", table, claims, figure, provenances, numbers)
