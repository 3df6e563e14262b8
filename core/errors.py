"""Domain errors that the REST layer turns into problem+json with a fixed status."""


class DomainError(Exception):
    status_code = 400
    code = "domain_error"
    title = "Request refused"

    def __init__(self, detail: str):
        self.detail = detail
        super().__init__(detail)


class InvalidInput(DomainError):
    status_code = 400
    code = "invalid_request"
    title = "Invalid request"

    def __init__(self, field: str, detail: str):
        self.field = field
        super().__init__(detail)


class Forbidden(DomainError):
    """Allowed to do this in general, but not to this one (the four-eyes rules): nothing was written."""

    status_code = 403
    code = "permission_denied"
    title = "Forbidden"


class NotFound(DomainError):
    status_code = 404
    code = "not_found"
    title = "Not found"


class Conflict(DomainError):
    status_code = 409
    code = "conflict"
    title = "Conflict"
