"""Real sentences for validation when no task is given: short and long, plain and with punctuation,
digits, accents and a pair set, so the padded batches exercise masks, token types and the position limit."""

SENTENCES = (
    "The film is a quiet triumph.",
    "A tedious, overlong mess that never finds its footing.",
    "Where is the nearest train station?",
    "Prices rose 3.2% in March, the fastest pace since 2011.",
    "She said the meeting would start at 9:30, but nobody showed up until ten.",
    "Les résultats du deuxième trimestre dépassent les attentes des analystes.",
    "How do I reset my password if I no longer have access to my email account?",
    "Free entry! Text WIN to 80082 to claim your prize now.",
    "The committee postponed its decision until more evidence on the drug's long-term safety is available.",
    "It rained all day, so we stayed in and played cards by the fire.",
    "Despite strong performances from its two leads, the screenplay collapses under the weight of its own ambition.",
    "ok",
)

PAIRS = (
    ("A man is playing a guitar.", "Someone is making music on a stringed instrument."),
    ("The cat sleeps on the sofa.", "Stock markets fell sharply after the announcement."),
    ("Can I pay by card?", "Do you accept credit cards?"),
)

# Long enough to be truncated at any position limit in use (512 tokens and more).
LONG_TEXT = " ".join(
    [
        "The history of the printing press begins long before Gutenberg, with woodblock printing in East Asia",
        "and movable type made of fired clay, later of wood and bronze. In Europe, the combination of an",
        "oil-based ink, a screw press adapted from wine making and a hand mould for casting metal type made",
        "the production of books faster and cheaper by orders of magnitude; within fifty years presses were",
        "running in more than two hundred cities, and millions of volumes had been printed.",
    ]
    * 12
)
