"""Query parameter strictness shared by the read APIs."""
from rest_framework.exceptions import ValidationError


def reject_blank(query_params, names) -> None:
    """`?to=` is a mistake, not "no filter": say so instead of silently ignoring it."""
    blank = {name: "must not be empty" for name in names if name in query_params and query_params[name].strip() == ""}
    if blank:
        raise ValidationError(blank)
