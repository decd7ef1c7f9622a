"""ner-autoresearch: an agent-driven experiment loop for biomedical NER."""
