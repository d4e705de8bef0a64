"""DensePolicy core: LLM client, sandbox, tree search and result storage, shared by every agent."""
