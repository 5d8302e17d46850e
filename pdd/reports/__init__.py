"""How results are shown: display names, table and figure writers, and one builder per table or figure."""
