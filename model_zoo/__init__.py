"""Models whose computation graphs the documentation draws, written for reading."""
