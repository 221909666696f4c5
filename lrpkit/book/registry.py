"""The figure registry ``notebooks/figures.yml``: which notebook makes which figure, with what.

The registry names, for each figure id, its notebook, the chapter that shows it, the image sets it
reads, whether its ``full`` profile needs a GPU, and its parameters per profile (``smoke``: CI,
minutes; ``quick``: a CPU laptop, tens of minutes; ``full``: the thesis's scale, for a GPU). The
parameters common to all notebooks are :data:`lrpkit.provenance.COMMON_PARAMETERS`. Every notebook
is checked when the registry is read: clean (no committed outputs), with one ``parameters`` cell
that defines every parameter the registry sets.

Some figures read the results of an :mod:`lrpkit.experiment` run (thesis chapter 4). The registry
names those runs in a top-level ``experiments:`` map (:class:`Experiment`: a config file, the
image sets it reads, config changes per profile); a figure that says ``experiment: <id>`` (or a list
of ids) gets the notebook parameter ``results``, the results directory (:func:`results_dir`; for a
list, a mapping id -> directory). Running them is the build's experiment step
(:mod:`lrpkit.book.experiments`).

Some figures and experiments need a network that the build trains itself (:mod:`lrpkit.training`
on the ground-truth task). The registry names those in a top-level ``networks:`` map
(:class:`Network`: a title, the training profile per book profile); a figure
or an experiment that says ``network: <id>`` gets the trained network's folder (the notebook
parameter ``network``; the config key ``model.trained``). Training them is the build's network step
(:mod:`lrpkit.book.networks`), before the experiments.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from ..provenance import COMMON_PARAMETERS

__all__ = ["PROFILES", "REGISTRY", "GENERATED", "EXPERIMENTS", "NETWORKS", "Figure", "Experiment", "Network",
           "load_registry", "load_experiments", "load_networks", "results_dir", "network_dir", "notebook_parameters",
           "select"]

PROFILES = ("smoke", "quick", "full")
REGISTRY = Path("notebooks") / "figures.yml"
#: Where the executed notebooks go (relative to the book root); never edited by hand.
GENERATED = Path("book") / "_generated"
#: Where the book keeps experiment results (relative to the book root): ``<id>/<profile>/``.
EXPERIMENTS = GENERATED / "_experiments"
#: Where the book keeps the networks it trains (relative to the book root): ``<id>/<profile>/``.
NETWORKS = GENERATED / "_networks"
_FIGURE_FIELDS = {"title", "notebook", "chapter", "gpu", "data", "parameters", "experiment", "network"}
_EXPERIMENT_FIELDS = {"title", "config", "data", "gpu", "parameters", "network"}
_NETWORK_FIELDS = {"title", "profiles"}
#: Config changes an experiment entry may not make: the build command sets them.
_EXPERIMENT_COMMON = {"device", "seed", "model.weights"}


@dataclass
class Figure:
    """One registry entry: a thesis figure or table and the notebook that makes it."""

    id: str
    title: str
    notebook: Path          # relative to the book root
    chapter: str            # docname of the prose page showing it, e.g. "book/what-lrp-sees"
    gpu: bool               # whether the `full` profile needs a GPU to be practical
    data: list[str]         # image sets of data/sets.tsv that the notebook reads
    parameters: dict[str, dict[str, Any]]   # "all" and one entry per profile
    experiment: list[str] = field(default_factory=list)   # ids of the experiments it reads
    network: str | None = None                             # id of the trained network it reads

    @property
    def output(self) -> Path:
        """Where the executed notebook goes (relative to the book root)."""
        return GENERATED / Path(self.chapter).name / f"{self.id}.ipynb"

    def resolved_parameters(self, profile: str, common: Mapping[str, Any]) -> dict[str, Any]:
        """The notebook's parameters for ``profile``: ``common`` (device, weights, seed), then the
        registry's ``all`` and the profile's own, later ones winning."""
        params = dict(common)
        params["profile"] = profile
        params.update(self.parameters.get("all", {}))
        params.update(self.parameters.get(profile, {}))
        if self.experiment:
            folders = {eid: results_dir(eid, profile).as_posix() for eid in self.experiment}
            params["results"] = folders[self.experiment[0]] if len(folders) == 1 else folders
        if self.network:
            params["network"] = network_dir(self.network, profile).as_posix()
        return params


@dataclass
class Experiment:
    """One entry of the registry's ``experiments:`` map: an experiment config the book runs."""

    id: str
    title: str
    config: Path                 # relative to the book root
    data: list[str]              # image sets it reads (their checksums are part of its inputs)
    gpu: bool                    # whether the `full` profile needs a GPU to be practical
    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)   # config changes per profile
    network: str | None = None   # id of the trained network it explains (the config's model.trained)

    def changes(self, profile: str, common: Mapping[str, Any], factory: bool = False,
                root: Path | str = ".") -> dict[str, Any]:
        """The config changes of ``profile`` (:func:`lrpkit.experiment.config.apply_changes`), then
        the build's device, the model (the trained network's folder under ``root`` for an experiment
        with a ``network``; else the build's weights, unless the config builds its model with a
        ``model.factory``) and seed."""
        out = dict(self.parameters.get("all", {}))
        out.update(self.parameters.get(profile, {}))
        out["device"] = common["device"]
        if self.network:
            out["model.trained"] = str((Path(root) / network_dir(self.network, profile)).resolve())
        elif not factory:
            out["model.weights"] = common["weights"]
        out["seed"] = int(common["seed"])
        return out


@dataclass
class Network:
    """One entry of the registry's ``networks:`` map: a network the book trains (:mod:`lrpkit.training`)."""

    id: str
    title: str
    profiles: dict[str, str] = field(default_factory=dict)   # book profile -> lrpkit.training.PROFILES name

    def training_profile(self, profile: str) -> str:
        """The :data:`lrpkit.training.PROFILES` name trained for the book's ``profile`` (default: the same name)."""
        return self.profiles.get(profile, profile)


def results_dir(experiment_id: str, profile: str) -> Path:
    """``book/_generated/_experiments/<id>/<profile>``, relative to the book root."""
    return EXPERIMENTS / experiment_id / profile


def network_dir(network_id: str, profile: str) -> Path:
    """``book/_generated/_networks/<id>/<profile>``, relative to the book root."""
    return NETWORKS / network_id / profile


def load_registry(root: Path | str = ".") -> list[Figure]:
    """Read and check ``notebooks/figures.yml`` under ``root``.

    Raises
    ------
    FileNotFoundError
        The registry or a notebook it names does not exist.
    ValueError
        An entry is malformed, a notebook has committed outputs or no ``parameters`` cell, or a
        registry parameter is not defined in that cell.
    """
    root = Path(root)
    path = root / REGISTRY
    if not path.is_file():
        raise FileNotFoundError(f"figure registry not found: {path}")
    doc = yaml.safe_load(path.read_text()) or {}
    networks = _networks(doc, path)
    experiments = _experiments(root, doc, path, networks)
    entries = doc.get("figures")
    if not isinstance(entries, Mapping) or not entries:
        raise ValueError(f"{path}: expected a non-empty mapping 'figures: {{id: entry}}'")
    figures = []
    for fid, entry in entries.items():
        where = f"{path}: figure {fid!r}"
        _check_entry(where, fid, entry, _FIGURE_FIELDS)
        for required in ("title", "notebook", "chapter"):
            if required not in entry:
                raise ValueError(f"{where}: missing field {required!r}")
        params = entry.get("parameters") or {}
        bad = set(params) - {"all", *PROFILES}
        if bad:
            raise ValueError(f"{where}: parameters has {sorted(bad)}; use 'all' and the profiles "
                             f"{', '.join(PROFILES)}")
        for group, values in params.items():
            if not isinstance(values or {}, Mapping):
                raise ValueError(f"{where}: parameters.{group} must be a mapping")
            clash = set(values or {}) & {"device", "weights", "profile"}
            if clash:
                raise ValueError(f"{where}: parameters.{group} sets {sorted(clash)}; these come "
                                 "from the build command")
        notebook = Path("notebooks") / entry["notebook"]
        figure = Figure(id=str(fid), title=str(entry["title"]), notebook=notebook,
                        chapter=str(entry["chapter"]), gpu=bool(entry.get("gpu", False)),
                        data=[str(d) for d in entry.get("data") or []],
                        parameters={k: dict(v or {}) for k, v in params.items()},
                        experiment=_figure_experiments(entry.get("experiment"), where, experiments),
                        network=_network_id(entry.get("network"), where, networks))
        names = notebook_parameters(root / notebook)
        if figure.network and "network" not in names:
            raise ValueError(f"{notebook}: reads network {figure.network!r} but its 'parameters' cell does not "
                             "define network (the trained network's folder the build passes)")
        if figure.experiment and "results" not in names:
            raise ValueError(f"{notebook}: reads experiment(s) {figure.experiment} but its 'parameters' cell "
                             "does not define results (the results directory the build passes)")
        missing = [k for k in COMMON_PARAMETERS if k not in names]
        if missing:
            raise ValueError(f"{notebook}: its 'parameters' cell does not define "
                             f"{', '.join(missing)}")
        for group, values in figure.parameters.items():
            undefined = sorted(set(values) - names)
            if undefined:
                raise ValueError(f"{where}: parameters.{group} sets {undefined}, which "
                                 f"{notebook}'s 'parameters' cell does not define")
        chapter_file = root / f"{figure.chapter}.md"
        if not chapter_file.is_file():
            raise FileNotFoundError(f"{where}: chapter page {chapter_file} not found")
        figures.append(figure)
    return figures


def _check_entry(where: str, key: Any, entry: Any, fields: set[str]) -> None:
    """A registry entry's id and fields: ValueError naming ``where`` and what is wrong."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", str(key)):
        raise ValueError(f"{where}: ids are lower-case letters, digits and dashes")
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: expected a mapping with {', '.join(sorted(fields))}")
    unknown = set(entry) - fields
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}; known: {', '.join(sorted(fields))}")


def load_experiments(root: Path | str = ".") -> dict[str, Experiment]:
    """The registry's ``experiments:`` map under ``root``, checked (empty if there is none)."""
    path = Path(root) / REGISTRY
    doc = yaml.safe_load(path.read_text()) or {}
    return _experiments(Path(root), doc, path, _networks(doc, path))


def load_networks(root: Path | str = ".") -> dict[str, Network]:
    """The registry's ``networks:`` map under ``root``, checked (empty if there is none)."""
    path = Path(root) / REGISTRY
    return _networks(yaml.safe_load(path.read_text()) or {}, path)


def _networks(doc: Mapping[str, Any], path: Path) -> dict[str, Network]:
    from ..training import PROFILES as TRAINING_PROFILES

    out = {}
    for nid, entry, where in _entries(doc, "networks", path, _NETWORK_FIELDS):
        profiles = entry.get("profiles") or {}
        if not isinstance(profiles, Mapping) or set(profiles) - set(PROFILES):
            raise ValueError(f"{where}: profiles must map book profiles ({', '.join(PROFILES)}) to training "
                             f"profiles, got {profiles!r}")
        for book_profile in PROFILES:
            name = profiles.get(book_profile, book_profile)
            if name not in TRAINING_PROFILES:
                raise ValueError(f"{where}: profile {book_profile!r} trains {name!r}, not a training profile "
                                 f"({', '.join(TRAINING_PROFILES)})")
        out[str(nid)] = Network(id=str(nid), title=str(entry.get("title", nid)),
                                profiles={str(k): str(v) for k, v in profiles.items()})
    return out


def _entries(doc: Mapping[str, Any], section: str, path: Path, fields: set[str]):
    """``(id, entry, where)`` of every entry of the registry's top-level map ``section``, each
    checked by :func:`_check_entry` (``where`` names it in messages)."""
    entries = doc.get(section) or {}
    if not isinstance(entries, Mapping):
        raise ValueError(f"{path}: '{section}' must map ids to entries, got {entries!r}")
    for key, entry in entries.items():
        where = f"{path}: {section[:-1]} {key!r}"
        _check_entry(where, key, entry, fields)
        yield key, entry, where


def _network_id(value: Any, where: str, networks: Mapping[str, Network]) -> str | None:
    """The ``network:`` field of a figure or experiment entry as a known id (or None)."""
    if value is None:
        return None
    if not isinstance(value, str) or value not in networks:
        known = ", ".join(sorted(networks)) or "none"
        raise ValueError(f"{where}: network {value!r} is not in the registry's 'networks:' (known: {known})")
    return value


def _experiments(root: Path, doc: Mapping[str, Any], path: Path,
                 networks: Mapping[str, Network]) -> dict[str, Experiment]:
    out = {}
    for eid, entry, where in _entries(doc, "experiments", path, _EXPERIMENT_FIELDS):
        if "config" not in entry:
            raise ValueError(f"{where}: missing field 'config' (an experiment config, e.g. experiments/x.yaml)")
        config = Path(str(entry["config"]))
        if not (root / config).is_file():
            raise FileNotFoundError(f"{where}: config file {root / config} not found")
        params = entry.get("parameters") or {}
        if not isinstance(params, Mapping):
            raise ValueError(f"{where}: parameters must map 'all' and profiles to config changes")
        bad = set(params) - {"all", *PROFILES}
        if bad:
            raise ValueError(f"{where}: parameters has {sorted(bad)}; use 'all' and the profiles {', '.join(PROFILES)}")
        for group, values in params.items():
            if not isinstance(values or {}, Mapping):
                raise ValueError(f"{where}: parameters.{group} must be a mapping of config changes")
            clash = _EXPERIMENT_COMMON & set(values or {})
            if clash:
                raise ValueError(f"{where}: parameters.{group} sets {sorted(clash)}; these come from the build command")
        data = entry.get("data") or []
        if not isinstance(data, list):
            raise ValueError(f"{where}: data must list image sets, got {data!r}")
        out[str(eid)] = Experiment(id=str(eid), title=str(entry.get("title", eid)), config=config,
                                   data=[str(d) for d in data], gpu=bool(entry.get("gpu", False)),
                                   parameters={k: dict(v or {}) for k, v in params.items()},
                                   network=_network_id(entry.get("network"), where, networks))
    return out


def _figure_experiments(value: Any, where: str, experiments: Mapping[str, Experiment]) -> list[str]:
    """The ``experiment:`` field of a figure entry as a list of known ids."""
    if value is None:
        return []
    ids = [value] if isinstance(value, str) else value
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise ValueError(f"{where}: experiment must be an experiment id or a list of them, got {value!r}")
    for eid in ids:
        if eid not in experiments:
            known = ", ".join(sorted(experiments)) or "none"
            raise ValueError(f"{where}: experiment {eid!r} is not in the registry's 'experiments:' (known: {known})")
    return list(ids)


def notebook_parameters(path: Path) -> set[str]:
    """Names assigned in the notebook's cell tagged ``parameters``; checks the notebook is clean.

    Raises
    ------
    FileNotFoundError, ValueError
        No such notebook; no (or more than one) ``parameters`` cell; committed outputs.
    """
    import nbformat

    if not path.is_file():
        raise FileNotFoundError(f"notebook not found: {path}")
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{path}: needs exactly one cell tagged 'parameters' (found {len(cells)})")
    for index, cell in enumerate(nb.cells, start=1):
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count")):
            raise ValueError(f"{path}: cell {index} has committed outputs; source notebooks are "
                             "stored clean (jupyter nbconvert --clear-output --inplace)")
    names = set()
    for node in ast.parse(cells[0].source).body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else [])
        for target in targets:
            if isinstance(target, ast.Name):
                names.add(target.id)
    return names


def select(figures: Sequence[Figure], chapters: Sequence[str], ids: Sequence[str],
           root: Path) -> list[Figure]:
    """The figures to (re)run: those of the named chapters and ids, plus any never built."""
    if not chapters and not ids:
        return list(figures)
    known_chapters = {Path(f.chapter).name for f in figures}
    for chapter in chapters:
        if Path(chapter).name not in known_chapters:
            raise ValueError(f"--chapter {chapter!r}: no figure of the registry is on it "
                             f"(chapters: {', '.join(sorted(known_chapters))})")
    known_ids = {f.id for f in figures}
    for fid in ids:
        if fid not in known_ids:
            raise ValueError(f"--figure {fid!r}: not in the registry ({', '.join(sorted(known_ids))})")
    wanted = {Path(c).name for c in chapters}
    return [f for f in figures if Path(f.chapter).name in wanted or f.id in ids
            or not (root / f.output).is_file()]
