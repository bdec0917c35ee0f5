"""Grammar-constrained decoding: JSON schemas, Lark grammars and tool calls valid by construction."""

from ondol.constrained.grammar import Grammar, GrammarCompiler, GrammarMatcher

__all__ = ["Grammar", "GrammarCompiler", "GrammarMatcher"]
