"""List answers: ``filter``, ``orderBy`` and paging of ``list`` methods, and ``aggregatedList`` scopes.

Every resource's ``list`` and ``aggregatedList`` answer through these two functions, so a filter, a page
token or an empty zone reads the same whichever resource is listed (the real API's shapes: ``items``
omitted on an empty page, ``nextPageToken`` as an offset, a ``NO_RESULTS_ON_PAGE`` warning per empty scope).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sdworker_tools.computesim import errors, filters
from sdworker_tools.computesim.links import Links

MAX_RESULTS = 500


def list_filter(query: Mapping[str, str]) -> filters.Expr:
    try:
        return filters.parse(query.get("filter"))
    except filters.FilterError as exc:
        raise errors.invalid_field(
            "filter", query.get("filter"), f"Invalid list filter expression: {exc}"
        ) from None


def page(
    query: Mapping[str, str], kind: str, list_id: str, items: list[dict[str, Any]], links: Links
) -> dict[str, Any]:
    """Filter, order and paginate a list answer like compute's ``list`` methods."""
    expr = list_filter(query)
    try:
        selected = [i for i in items if expr.matches(i)]
    except filters.FilterError as exc:
        raise errors.invalid_field("filter", query.get("filter"), str(exc)) from None
    order = (query.get("orderBy") or "name").split()
    if order[0] not in ("name", "creationTimestamp"):
        raise errors.invalid_field(
            "orderBy", query.get("orderBy"), "Supported: name, creationTimestamp [desc]."
        )
    selected.sort(key=lambda i: str(i.get(order[0], "")), reverse=order[1:] == ["desc"])
    try:
        max_results = int(query.get("maxResults") or MAX_RESULTS)
        offset = int(query.get("pageToken") or 0)
    except ValueError:
        raise errors.invalid("Invalid maxResults or pageToken.") from None
    if not 0 <= max_results <= MAX_RESULTS:
        raise errors.invalid_field("maxResults", max_results, f"Must be between 0 and {MAX_RESULTS}.")
    max_results = max_results or MAX_RESULTS
    selected_page = selected[offset : offset + max_results]
    out: dict[str, Any] = {"kind": kind, "id": list_id, "selfLink": f"{links.base}{list_id}"}
    if selected_page:
        out["items"] = selected_page
    if offset + max_results < len(selected):
        out["nextPageToken"] = str(offset + max_results)
    return out


def aggregated(
    query: Mapping[str, str],
    *,
    project: str,
    zones: Sequence[str],
    links: Links,
    field_name: str,
    kind: str,
    items: list[dict[str, Any]],
) -> dict[str, Any]:
    """An ``aggregatedList`` answer: the filtered items of each zone under ``zones/<zone>``."""
    expr = list_filter(query)
    scoped: dict[str, Any] = {}
    for zone in zones:
        link = links.zone(project, zone)
        in_zone = [i for i in items if i["zone"] == link and expr.matches(i)]
        if in_zone:
            scoped[f"zones/{zone}"] = {field_name: sorted(in_zone, key=lambda i: str(i["name"]))}
        else:
            scoped[f"zones/{zone}"] = {
                "warning": {
                    "code": "NO_RESULTS_ON_PAGE",
                    "message": "There are no results for scope 'zones/" + zone + "' on this page.",
                    "data": [{"key": "scope", "value": f"zones/{zone}"}],
                }
            }
    return {
        "kind": kind,
        "id": f"projects/{project}/aggregated/{field_name}",
        "items": scoped,
        "selfLink": f"{links.project(project)}/aggregated/{field_name}",
    }
