"""The build's network step: train the networks that figures and experiments read, once per inputs.

A network of the registry's ``networks:`` map (:class:`lrpkit.book.registry.Network`) is VGG-16's
layout trained on the ground-truth task (:mod:`lrpkit.training`), with the training profile that the
registry names for the book's profile and the build's seed. It is a step of the build keyed like the
experiments: :func:`network_inputs` (the training config, the checksums of the photos its task cuts
backgrounds from, lrpkit's version and source hash, the pinned packages) hashed by
:func:`lrpkit.book.cache.fingerprint`. Its folder is
``book/_generated/_networks/<id>/<profile>/`` (:func:`lrpkit.book.registry.network_dir`), with
:data:`RECORD_FILE` naming the inputs it was trained from; the weights are never committed.

A training that is interrupted is continued, not restarted: it runs in
``.<profile>.<fingerprint>.partial`` beside the folder (:func:`lrpkit.training.train` continues from
its checkpoint), which replaces the folder when complete. Figures that read the network are keyed by
its weights' sha256 (:func:`figure_key`), and every provenance box names it (the network's
:class:`lrpkit.models.WeightsInfo`).
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Sequence

from .cache import code_inputs, data_checksums, fingerprint
from .errors import BuildError
from .registry import Network, network_dir

__all__ = ["NetworkResult", "training_config", "network_inputs", "network_fingerprint", "figure_key", "prepare",
           "RECORD_FILE"]

#: The file in a network's folder that records the inputs it was trained from.
RECORD_FILE = "book-inputs.json"


@dataclass
class NetworkResult:
    """What the build did with one network: ``status`` is ``"trained"`` or ``"reused"``."""

    network: str
    status: str
    seconds: float
    fingerprint: str
    folder: str              # relative to the book root
    sha256: str              # of the weights
    test_accuracy: float


def training_config(network: Network, profile: str, common: Mapping[str, Any]):
    """The :class:`lrpkit.training.TrainingConfig` of ``network`` for the book's ``profile`` and seed."""
    import dataclasses

    from ..training import PROFILES

    return dataclasses.replace(PROFILES[network.training_profile(profile)], seed=int(common["seed"]))


def network_inputs(network: Network, profile: str, common: Mapping[str, Any]) -> Dict[str, Any]:
    """Everything the trained weights depend on (its hash is the fingerprint)."""
    config = training_config(network, profile, common)
    return {"network": network.id, "training": config.to_dict(),
            "data_sha256": data_checksums(list(config.task.backgrounds), f"network {network.id!r}"), **code_inputs()}


def network_fingerprint(network: Network, profile: str, common: Mapping[str, Any]) -> str:
    return fingerprint(network_inputs(network, profile, common))


def _record(folder: Path) -> Dict[str, Any] | None:
    try:
        return json.loads((folder / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _complete(folder: Path, fp: str) -> bool:
    from ..training import RECORD_FILE as TRAINING_RECORD, WEIGHTS_FILE

    record = _record(folder)
    return (record is not None and record.get("fingerprint") == fp and (folder / TRAINING_RECORD).is_file()
            and (folder / WEIGHTS_FILE).is_file())


def figure_key(root: Path, network: Network, profile: str, common: Mapping[str, Any]) -> Dict[str, str]:
    """What a figure reading the network is keyed by: the inputs' fingerprint and, once trained,
    the weights' sha256 (from its folder)."""
    fp = network_fingerprint(network, profile, common)
    folder = Path(root) / network_dir(network.id, profile)
    sha = (_record(folder) or {}).get("sha256") if _complete(folder, fp) else None
    return {"fingerprint": fp, "sha256": sha}


def prepare(root: Path, ids: Sequence[str], networks: Mapping[str, Network], profile: str,
            common: Mapping[str, Any], *, force: bool = False, progress: bool = True,
            echo: Callable[[str], None] = lambda line: print(line, file=sys.stderr)) -> List[NetworkResult]:
    """Make sure the networks ``ids`` are trained for ``profile``: reuse each, or train it.

    Every training config is made and fingerprinted first (an unknown image set stops the build
    before anything is written). A folder trained from the same inputs is reused; otherwise the
    network trains into ``.<profile>.<fingerprint>.partial`` beside its folder (continued if an
    earlier build was interrupted there), which replaces the folder when complete. ``force`` trains
    again from scratch.
    """
    from .. import training
    from .experiments import _fresh_partial, _replace
    from ..experiment.store import write_atomic

    root = Path(root)
    ids = list(dict.fromkeys(ids))
    unknown = [i for i in ids if i not in networks]
    if unknown:
        raise ValueError(f"network {unknown[0]!r} is not in the registry's 'networks:' (known: "
                         f"{', '.join(sorted(networks)) or 'none'})")
    planned = {nid: (training_config(networks[nid], profile, common), network_inputs(networks[nid], profile, common))
               for nid in ids}
    results = []
    for nid in ids:
        config, inputs = planned[nid]
        fp = fingerprint(inputs)
        folder = network_dir(nid, profile)
        target = root / folder
        start = time.perf_counter()
        if not force and _complete(target, fp):
            record = training.read_record(target)
            results.append(NetworkResult(nid, "reused", time.perf_counter() - start, fp, folder.as_posix(),
                                         record["sha256"], record["test"]["accuracy"]))
            continue
        partial = _fresh_partial(target, profile, fp, restart=force)
        echo(f"network {nid!r} ({networks[nid].title}), profile {profile}: training "
             f"{networks[nid].training_profile(profile)} ({config.images:,} images) into {partial.name}")
        try:
            trained = training.train(config, partial, progress=progress, echo=lambda line: echo(f"  {line}"))
        except Exception as err:  # noqa: BLE001 -- one line naming the network; the folder stays to continue
            raise BuildError(f"network {nid!r} (profile {profile}) failed to train: {type(err).__name__}: "
                             f"{err}") from err
        seconds = time.perf_counter() - start
        record = {"network": nid, "profile": profile, "fingerprint": fp, "sha256": trained.sha256,
                  "inputs": inputs, "seconds": round(seconds, 2)}
        write_atomic(partial / RECORD_FILE,
                     lambda p: p.write_text(json.dumps(record, indent=1, default=str), encoding="utf-8"))
        _replace(partial, target)
        results.append(NetworkResult(nid, "trained", seconds, fp, folder.as_posix(), trained.sha256,
                                     trained.test_accuracy))
    return results
