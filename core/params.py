"""Query parameter strictness shared by the read APIs."""
from rest_framework.exceptions import ValidationError


def reject_blank_or_repeated(query_params, names) -> None:
    """`?to=` is a mistake, not "no filter", and `?currency=EUR&currency=USD` would silently keep the last one:
    say so (400, naming each parameter) instead of answering something the caller did not ask for."""
    errors = {}
    for name in names:
        values = query_params.getlist(name) if name in query_params else ()
        if len(values) > 1:
            errors[name] = f"given {len(values)} times; give it once"
        elif values and values[0].strip() == "":
            errors[name] = "must not be empty"
    if errors:
        raise ValidationError(errors)


def reject_unknown(query_params, names) -> None:
    """`?ocurred_after=` (misspelt) would silently filter nothing and answer everything: name each parameter
    the endpoint does not take (400), as Stripe does, instead of answering another question."""
    known = set(names)
    unknown = [name for name in query_params if name not in known]
    if unknown:
        takes = ", ".join(sorted(known)) or "no parameters"
        raise ValidationError({name: f"unknown parameter; this endpoint takes {takes}" for name in unknown})
