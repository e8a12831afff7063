//! Python-subset expression evaluator (filled in by its own change).
