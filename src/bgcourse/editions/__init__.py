"""The course in other languages: editions that mirror the English notebooks cell for cell."""
