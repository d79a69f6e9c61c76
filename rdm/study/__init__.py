"""Generation studies: prompts x modes x seeds, scored by judges of their own, with statistics."""
