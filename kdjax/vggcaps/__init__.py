"""VggCaps (thesis section 3.3): the LLM-guided audio-visual caption dataset and the analysis that compares
caption sets (`python -m kdjax.vggcaps analyse`)."""
