"""`genseq generate`: continue a prompt with a language model, streamed to the terminal or as JSON."""

from __future__ import annotations

import argparse
import json
import re
import secrets
import sys
import time

from ..errors import ConfigError, DataError

# CLI flag dest -> GenerationConfig field, for the flags whose names differ
FIELDS = {"no_repeat_ngram": "no_repeat_ngram_size", "banned_ids": "banned_token_ids"}
ENGINE_OPTIONS = (
    "max_new_tokens", "min_new_tokens", "temperature", "top_k", "top_p", "min_p", "typical_p",
    "repetition_penalty", "no_repeat_ngram", "banned_ids", "num_beams", "length_penalty",
    "num_return_sequences", "stop", "max_time", "precision",
)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate", help="continue a prompt", description="Continue a prompt with a language model.",
    )
    parser.add_argument("--prompt", metavar="TEXT", required=True, help='text to continue; "-" reads it from stdin; "" starts a new document')
    parser.add_argument("--model", metavar="DIR_OR_HUB_ID", help="checkpoint directory or Hugging Face Hub id (default: the embedded model)")
    parser.add_argument("--max-new-tokens", metavar="N", type=int, default=100, help="(default 100; very large values are capped with a note)")
    parser.add_argument("--min-new-tokens", metavar="N", type=int, help="EOS is masked until this many tokens are generated")
    parser.add_argument("--stop", nargs="+", action="extend", metavar="STR",
                        help=r"stop when the text contains STR (left out of it); \n and \t are understood")
    parser.add_argument("--max-time", metavar="SECONDS", type=float, help="stop after this many seconds")
    parser.add_argument("--seed", metavar="S", type=int, help="seed of the sampling (default: a random one, shown with --json)")

    sampling = parser.add_argument_group("sampling")
    sampling.add_argument("--temperature", metavar="T", type=float, help="(default 1; 0: greedy)")
    sampling.add_argument("--top-k", metavar="K", type=int, help="keep the K most likely tokens")
    sampling.add_argument("--top-p", metavar="P", type=float, help="keep the most likely tokens holding probability P, in (0, 1]")
    sampling.add_argument("--min-p", metavar="P", type=float, help="keep tokens at least P times as likely as the best, in [0, 1]")
    sampling.add_argument("--typical-p", metavar="P", type=float, help="locally typical sampling mass, in (0, 1]")
    sampling.add_argument("--repetition-penalty", metavar="R", type=float, help="> 1 makes tokens already seen less likely")
    sampling.add_argument("--no-repeat-ngram", type=int, metavar="N", help="never repeat an n-gram of N tokens")
    sampling.add_argument("--banned-ids", type=int, nargs="+", action="extend", metavar="ID", help="token ids never generated")
    sampling.add_argument("--num-return-sequences", metavar="N", type=int, help="completions to return (default 1)")

    beam = parser.add_argument_group("beam search")
    beam.add_argument("--num-beams", metavar="B", type=int, help="beam search with B beams (default 1: sampling)")
    beam.add_argument("--length-penalty", metavar="L", type=float, help="beams are ranked by logprob / length ** this (default 1)")

    output = parser.add_argument_group("output")
    output.add_argument("--stream", action=argparse.BooleanOptionalAction, default=None,
                        help="print text as it is generated (default: on, unless --json, beams or several sequences)")
    output.add_argument("--json", action="store_true",
                        help='print one JSON document: {"prompt", "model", "seed", "completions": [...], "seconds"}')
    output.add_argument("--precision", choices=["fp32", "bf16", "int8"], help="of the decoding step (default fp32; bf16 and int8 are faster)")
    output.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu", help="(default cpu)")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ..checkpoint import from_pretrained
    from ..defaults import default_model_dir
    from ..generation import GenerationConfig, generate, stream
    from ..train import resolve_device

    prompt = read_prompt(args.prompt)
    seed = args.seed if args.seed is not None else secrets.randbits(31)
    config = GenerationConfig(**engine_options(args), seed=seed)
    streaming = wants_stream(args, config)
    model_name = args.model or str(default_model_dir())
    model, tokenizer = from_pretrained(model_name, device=resolve_device(args.device))
    start = time.perf_counter()
    if streaming:
        print(prompt, end="", flush=True)
        for delta in stream(model, tokenizer, prompt, config):
            print(delta, end="", flush=True)
        print()
        return 0
    completions = generate(model, tokenizer, prompt, config)
    seconds = time.perf_counter() - start
    if args.json:
        document = {"prompt": prompt, "model": model_name, "seed": seed,
                    "completions": [c.to_dict() for c in completions], "seconds": round(seconds, 4)}
        print(json.dumps(document))
    else:
        print("\n\n".join(prompt + c.text for c in completions))
    return 0


def engine_options(args) -> dict:
    """The GenerationConfig fields the user set, with --max-new-tokens capped."""
    from ..generation import MAX_NEW_TOKENS

    options = {FIELDS.get(name, name): getattr(args, name) for name in ENGINE_OPTIONS if getattr(args, name) is not None}
    if options["max_new_tokens"] > MAX_NEW_TOKENS:
        print(f"genseq: note: --max-new-tokens {options['max_new_tokens']} capped at {MAX_NEW_TOKENS}", file=sys.stderr)
        options["max_new_tokens"] = MAX_NEW_TOKENS
    if "stop" in options:
        options["stop"] = [unescape(text) for text in options["stop"]]
    return options


def wants_stream(args, config) -> bool:
    one_sequence = config.num_beams == 1 and config.num_return_sequences == 1
    if args.stream and (args.json or not one_sequence):
        raise ConfigError(
            "--stream follows one sampled sequence as it grows; it cannot be combined with --json, "
            "--num-beams above 1 or --num-return-sequences above 1"
        )
    return one_sequence and not args.json if args.stream is None else args.stream


def read_prompt(prompt: str) -> str:
    """The prompt text; "-" reads stdin (without the one trailing newline that echo adds)."""
    if prompt == "-":
        data = sys.stdin.buffer.read()
        try:
            prompt = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise DataError(f"the prompt on stdin is not UTF-8 text (invalid byte at offset {error.start})") from None
        prompt = prompt[:-1] if prompt.endswith("\n") else prompt
        prompt = prompt[:-1] if prompt.endswith("\r") else prompt
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes in argv arrive as lone surrogates
        raise DataError("the prompt is not valid UTF-8 text") from None
    return prompt


def unescape(text: str) -> str:
    r"""\n, \t and \\ in a --stop value become a newline, a tab and a backslash; the rest stays."""
    return re.sub(r"\\([nt\\])", lambda m: {"n": "\n", "t": "\t", "\\": "\\"}[m.group(1)], text)
