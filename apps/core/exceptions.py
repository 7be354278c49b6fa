class ApplicationError(Exception):
    """An expected failure of a business operation, shown to the user as a message.

    Services raise it; views turn it into a form error or a flash message.
    """

    def __init__(self, message: str, *, extra: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra or {}
