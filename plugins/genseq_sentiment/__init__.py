"""The built-in `sentiment` task: an LSTM reads a short text and says whether it is positive or negative.

The model is the seed article's Keras example (Embedding(top_words, 32) ->
LSTM(100) -> Dense(1, sigmoid), binary cross-entropy, Adam) in PyTorch, with
genseq's SentencePiece tokenizer; it reports the probability of "positive"
after every token, so one can watch its opinion move through a sentence.
Importing this package is light (the task declaration only).
"""

from .task import SentimentTask

__all__ = ["SentimentTask"]
