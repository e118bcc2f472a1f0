"""DeepSeek-V3, written from the published inference reference's architecture."""
