"""Results made elsewhere taken into the build: an experiment run on a cluster or a GPU node.

The thesis's experiments are hours of GPU time; ``lrpkit experiment run --shard K/N`` and
``lrpkit experiment merge`` make their results on a cluster (``scripts/slurm-experiment.sh``).
``python -m lrpkit.book build --results ID=DIR`` then uses such a directory for the book's
experiment ``ID`` instead of running it, after checking that it is the experiment the build would
have run (:func:`check`): the same config except where it ran (``device``, the folders of the
machine it ran on, ``name`` and ``output``), the same images by checksum and the same weights by
state checksum, and a complete, merged table with one row per image × setting × order.

The build copies what its notebooks read (:func:`copy`: the table, the plan, the run's metadata)
into its own results folder, with the config as this machine resolves it (its folders and device,
so that the heatmaps of a setting can be recomputed here); the directory given is only read.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Mapping

from .errors import BuildError

__all__ = ["Checked", "check", "copy", "WHERE_IT_RAN"]

#: Keys of a config that say where an experiment ran, not what it computed: not compared.
WHERE_IT_RAN = ("name", "output", "device")
#: Keys of ``images`` that are folders of one machine (the units' checksums say what was read).
@dataclass
class Checked:
    """A results directory found to be the experiment the build would run."""

    source: Path
    config: Any                    # the build's resolved :class:`~lrpkit.experiment.Config`
    results_sha256: str
    metadata: Dict[str, Any]       # the run's metadata.json (where, with what, when)

    def record(self) -> Dict[str, Any]:
        """What the book's results folder records of the import (in its ``book-inputs.json``)."""
        meta = self.metadata
        return {"from": str(self.source), "results_sha256": self.results_sha256,
                "device": meta.get("device"), "host": meta.get("host"), "lrpkit": meta.get("lrpkit"),
                "created": meta.get("created"), "merged": meta.get("merged")}


def _comparable(config: Mapping[str, Any]) -> Dict[str, Any]:
    from ..experiment.config import machine_independent

    return machine_independent({k: v for k, v in config.items() if k not in WHERE_IT_RAN})


def check(experiment_id: str, source: Path, config, echo: Callable[[str], None] = lambda line: None) -> Checked:
    """Check that the results directory ``source`` holds experiment ``experiment_id`` as ``config``
    (the build's resolved config for it) would compute it.

    Builds the config's model once (to compare the weights' state checksum) and lists its images
    (their checksums); writes nothing.

    Raises
    ------
    ValueError
        One line starting ``--results ID=DIR:``: not a results directory, not merged yet, another
        config (the first key that differs, with both values), other images or weights, or a table
        without exactly one row per image × setting × order.
    """
    import pyarrow.parquet as pq

    from ..experiment import plan as planning
    from ..experiment import runner, store
    from ..experiment.config import first_difference, shorten
    from ..checksums import sha256_file

    name = f"--results {experiment_id}={source}"
    folder = store.ResultsDir(source)
    if not folder.exists():
        raise ValueError(f"{name}: not an experiment results directory (no {store.CONFIG_FILE}); give the folder "
                         f"`lrpkit experiment run ... --out` wrote")
    saved_plan = folder.read_plan()
    if saved_plan is None:
        raise ValueError(f"{name}: no {store.PLAN_FILE}: no run got as far as planning there")
    results = folder.path / store.RESULTS_FILE
    if not results.is_file():
        raise ValueError(f"{name}: no {store.RESULTS_FILE} yet ({len(folder.done())} of {len(saved_plan['units'])} "
                         f"images done); finish the run, then `lrpkit experiment merge {source}`")

    _, weights, resolved = runner.build_model(config, echo=echo)
    diff = first_difference(_comparable(folder.read_config()), _comparable(resolved.data))
    what = "config"
    if diff is None:
        diff = first_difference(saved_plan, runner.planned(planning.units(resolved), weights))
        what = "images or weights"
    if diff is not None:
        key, there, here = diff
        raise ValueError(f"{name}: made with other {what} than this build's experiment {experiment_id!r}: {key!r} is "
                         f"{shorten(there)} there but {shorten(here)} here (config {resolved.source}, with the build's "
                         f"profile, weights and seed)")

    units = [u["unit"] for u in saved_plan["units"]]
    first, second = resolved.grid
    per_unit = len(first) * len(second) * len(resolved.orders)
    found = pq.read_table(results, columns=["unit"]).column("unit").to_pylist()
    counts = {u: 0 for u in units}
    for unit in found:
        counts[unit] = counts.get(unit, 0) + 1
    wrong = [u for u, c in counts.items() if c != per_unit]
    if wrong:
        raise ValueError(f"{name}: {results.name} has {counts[wrong[0]]} rows of image {wrong[0]!r}, not {per_unit} "
                         f"(one per setting and order; {len(wrong)} image(s) wrong); merge it again")
    return Checked(Path(source).resolve(), resolved, sha256_file(results), folder.read_metadata() or {})


def copy(checked: Checked, partial: Path) -> None:
    """Copy the checked results into the fresh folder ``partial``: the table, plan and metadata as
    they are, the config as this build resolved it (this machine's folders and device)."""
    from ..experiment import store
    from ..checksums import sha256_file

    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    for name in (store.PLAN_FILE, store.METADATA_FILE, store.RESULTS_FILE):
        if (checked.source / name).is_file():
            shutil.copyfile(checked.source / name, partial / name)
    (partial / store.CONFIG_FILE).write_text(checked.config.to_yaml(), encoding="utf-8")
    if sha256_file(partial / store.RESULTS_FILE) != checked.results_sha256:
        raise BuildError(f"{checked.source / store.RESULTS_FILE} changed while it was copied; build again")
