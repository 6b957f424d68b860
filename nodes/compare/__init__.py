"""FIS Compare's figures and side-by-side picture."""
