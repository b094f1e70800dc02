"""Chapter 7: the example apps that run as real processes, and the exercises' reference solutions."""
