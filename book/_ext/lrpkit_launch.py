"""Sphinx extension of the companion book: launch buttons that open the source notebooks, and the
repository's address on the pages.

sphinx-book-theme puts launch buttons on notebook pages only, and points them at the page's own
file. The book's pages are prose (``book/*.md``) and executed notebooks (``book/_generated/``,
not in the repository); what a reader should open is the *source* notebook in ``notebooks/``,
named by the figure registry ``notebooks/figures.yml``. This extension adds, on every chapter page
and executed-notebook page, a launch menu with one link per figure notebook of that page and per
service configured in ``_config.yml``'s ``launch_buttons`` (Jupyter Book's own keys):

- ``colab_url``: Google Colab opens the notebook from GitHub (:func:`colab_link`);
- ``binderhub_url``: a BinderHub (``https://mybinder.org``) builds the repository's environment
  and opens the notebook in JupyterLab (:func:`binder_link`);
- ``jupyterhub_url``: a JupyterHub with nbgitpuller clones the repository into the reader's home
  (a folder named after the repository) and opens the notebook in JupyterLab
  (:func:`jupyterhub_link`). A hub has no public default: empty, as in the book's configuration,
  means no JupyterHub button.

Every link is built from the one repository address, ``repository.url`` / ``repository.branch``.
The same address reaches the prose: at ``config-inited`` the extension defines MyST substitutions
(:func:`substitutions`), so that ``book/reproducing.md`` prints ``{{ repository_url }}`` and the
JupyterHub link pattern instead of pointing at the configuration.

It also drops repeated inline scripts from a page: sphinx-thebe 0.3.1 under Sphinx 7.4 adds its
``const THEBE_JS_URL = ...`` script twice, a JavaScript error on every page.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping
from urllib.parse import quote

import yaml

#: The services a page's launch menu can link to: (``launch_buttons`` key, name on the button, icon).
SERVICES = (("colab_url", "Colab", "_static/images/logo_colab.png"),
            ("binderhub_url", "Binder", "_static/images/logo_binder.svg"),
            ("jupyterhub_url", "JupyterHub", "_static/images/logo_jupyterhub.svg"))
#: What the prose shows in place of a hub's address and a notebook, in the JupyterHub link pattern.
HUB_PLACEHOLDER, NOTEBOOK_PLACEHOLDER = "https://HUB", "notebooks/NOTEBOOK.ipynb"


def github_parts(repo_url: str) -> tuple[str, str]:
    """(owner, repository) of ``https://github.com/OWNER/REPO``; ValueError for another address."""
    owner_repo = repo_url.rstrip("/").split("github.com/", 1)
    parts = owner_repo[1].split("/") if len(owner_repo) == 2 else []
    if len(parts) < 2 or not all(parts[:2]):
        raise ValueError(f"repository address {repo_url!r} is not of the form https://github.com/OWNER/REPO")
    return parts[0], parts[1].removesuffix(".git")


def colab_link(colab_url: str, repo_url: str, branch: str, path: str) -> str:
    """The Colab address that opens ``path`` (relative to the repository root) from GitHub."""
    owner, repo = github_parts(repo_url)
    return f"{colab_url.rstrip('/')}/github/{owner}/{repo}/blob/{branch}/{quote(path)}"


def binder_link(binderhub_url: str, repo_url: str, branch: str, path: str | None = None) -> str:
    """The BinderHub address that builds the repository at ``branch`` and opens ``path`` in
    JupyterLab (``?labpath=``), or JupyterLab's file browser when ``path`` is None."""
    owner, repo = github_parts(repo_url)
    url = f"{binderhub_url.rstrip('/')}/v2/gh/{owner}/{repo}/{branch}"
    return url if path is None else f"{url}?labpath={quote(path)}"


def jupyterhub_link(jupyterhub_url: str, repo_url: str, branch: str, path: str) -> str:
    """The nbgitpuller address on a JupyterHub: pull ``branch`` of the repository into the
    reader's ``~/<repository name>`` and open ``path`` there in JupyterLab."""
    _, repo = github_parts(repo_url)
    query = "&".join(f"{key}={quote(value, safe='/:')}" for key, value in
                     (("repo", repo_url.rstrip("/")), ("branch", branch), ("urlpath", f"lab/tree/{repo}/{path}")))
    return f"{jupyterhub_url.rstrip('/')}/hub/user-redirect/git-pull?{query}"


_LINKS = {"colab_url": colab_link, "binderhub_url": binder_link, "jupyterhub_url": jupyterhub_link}


def launch_links(launch_buttons: Mapping[str, str], repo_url: str, branch: str,
                 path: str) -> list[tuple[str, str, str]]:
    """(service name, icon, address) for every service of :data:`SERVICES` that ``launch_buttons``
    gives an address, opening ``path`` of the repository; none for an address not on GitHub."""
    if "github.com/" not in repo_url:
        return []
    return [(name, icon, _LINKS[key](launch_buttons[key], repo_url, branch, path))
            for key, name, icon in SERVICES if (launch_buttons.get(key) or "").strip()]


def substitutions(theme_options: Mapping) -> dict[str, str]:
    """The MyST substitutions of the repository: its address (a link, shown whole), branch, the Binder link of
    the whole repository and the JupyterHub (nbgitpuller) link pattern with :data:`HUB_PLACEHOLDER`
    and :data:`NOTEBOOK_PLACEHOLDER`, and the pip command that installs lrpkit from it, each as a code block (a page shows it on a line of its own, where it
    scrolls instead of widening the page); empty for an address not on GitHub."""
    repo_url = str(theme_options.get("repository_url", "")).rstrip("/")
    branch = theme_options.get("repository_branch") or "main"
    if "github.com/" not in repo_url:
        return {}
    binderhub = (theme_options.get("launch_buttons") or {}).get("binderhub_url") or "https://mybinder.org"
    binder = binder_link(binderhub, repo_url, branch)
    # Link text in code: pydata-sphinx-theme would show a GitHub link whose text is its address as "owner/repo".
    return {"repository_url": f"[`{repo_url}`]({repo_url})",
            "repository_branch": f"`{branch}`",
            "binder_link": f"[`{binder}`]({binder})",
            "pip_install": f'```bash\npip install "lrpkit[book] @ git+{repo_url}"\n```\n',
            "jupyterhub_link_pattern":
                f"```text\n{jupyterhub_link(HUB_PLACEHOLDER, repo_url, branch, NOTEBOOK_PLACEHOLDER)}\n```\n"}


def add_substitutions(app, config) -> None:
    """``config-inited``: add :func:`substitutions` to ``myst_substitutions`` (before MyST reads them)."""
    config.myst_substitutions = {**(config.myst_substitutions or {}), **substitutions(config.html_theme_options)}


def _registry(app) -> dict:
    path = Path(app.confdir) / "notebooks" / "figures.yml"
    if not path.is_file():
        return {}
    return (yaml.safe_load(path.read_text()) or {}).get("figures") or {}


def _notebooks_for(app, pagename: str) -> list[tuple[str, str]]:
    """(title, source notebook path) of the figures shown on, or made by, this page."""
    found = []
    for fid, entry in _registry(app).items():
        chapter = str(entry.get("chapter", ""))
        generated = f"book/_generated/{Path(chapter).name}/{fid}"
        if pagename in (chapter, generated):
            found.append((str(entry.get("title", fid)), f"notebooks/{entry['notebook']}"))
    return found


def add_launch_buttons(app, pagename, templatename, context, doctree):
    """``html-page-context``: the page's launch menu, one link per source notebook and service."""
    if "header_buttons" not in context:
        return
    header = context["header_buttons"]
    # Drop the theme's own launch menu: it points at the executed copy, absent from git.
    header[:] = [b for b in header if b.get("label") != "launch-buttons"]
    options = app.config["html_theme_options"]
    launch = options.get("launch_buttons") or {}
    repo_url = options.get("repository_url", "")
    branch = options.get("repository_branch") or "main"
    links = [(name, icon, url, title, path) for title, path in _notebooks_for(app, pagename)
             for name, icon, url in launch_links(launch, repo_url, branch, path)]
    if not links:
        return
    order = [name for _, name, _ in SERVICES]
    links.sort(key=lambda link: order.index(link[0]))          # by service, then in the registry's order
    buttons = [{
        "type": "link",
        "text": f"{name}: {title}",
        "tooltip": f"Open {path} in {name}",
        "icon": icon,
        "url": url,
        "label": f"{name.lower()}-launch-button",
    } for name, icon, url, title, path in links]
    names = ", ".join(dict.fromkeys(link[0] for link in links))
    header.append({"type": "group", "tooltip": f"Run this page's notebooks ({names})",
                   "icon": "fas fa-rocket", "buttons": buttons, "label": "launch-buttons"})


def drop_repeated_scripts(app, pagename, templatename, context, doctree):
    seen, kept = set(), []
    for script in context.get("script_files", []):
        key = (getattr(script, "filename", script) or "",   # None and "" both mean inline
               tuple(sorted((getattr(script, "attributes", None) or {}).items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    if "script_files" in context:
        context["script_files"] = kept


def setup(app):
    app.connect("config-inited", add_substitutions)
    app.connect("html-page-context", drop_repeated_scripts, priority=502)
    # After the theme's launch and header buttons (priority 501).
    app.connect("html-page-context", add_launch_buttons, priority=502)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
