"""Write a tiny random-weight llama-architecture GGUF (~0.5 MB, f32) that llama.cpp loads:

    python make_tiny_gguf.py tiny.gguf          (in the llamacpp venv: it needs gguf and numpy)

The same bytes every run (a seeded generator). Output is deterministic nonsense made of whole English words:
byte/control/EOS tokens are pushed to very negative logits, so greedy decoding always emits words and always
runs to max_tokens (finish_reason == "length"), unless the request has a ``stop`` sequence. One word is one
token and one stream chunk. MEAN pooling gives /v1/embeddings one 64-d vector per input. From
shared/research/tiny-llm-server.md, where it was checked against llama-cpp-python 0.3.36.
"""

from __future__ import annotations

import sys

import gguf  # type: ignore[import-not-found]
import numpy as np

path = sys.argv[1] if len(sys.argv) > 1 else "tiny.gguf"
rng = np.random.default_rng(1234)
N_EMBD, N_HEAD, N_LAYER, N_FF, N_CTX = 64, 4, 2, 128, 2048

# SentencePiece-style ("llama") vocab: <unk>, <s>, </s>, 256 byte tokens, then pieces.
words = ("the a of and to in is it you that he was for on are with as I his they be at one "
         "have this from or had by hot word but what some we can out other were all there "
         "when up use your how said an each she which do their time if will way about many "
         "then them write would like so these her long make thing see him two has look more "
         "day could go come did number sound no most people my over know water than call "
         "first who may down side been now find").split()
tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + [gguf.TokenType.BYTE] * 256
pieces = ["\u2581"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["\u2581" + w for w in words]
tokens += pieces
types += [gguf.TokenType.NORMAL] * len(pieces)
scores = [0.0] * 259 + [-float(i) for i in range(len(pieces))]
n_vocab = len(tokens)
allowed = np.zeros(n_vocab, bool)
allowed[259 + 27:] = True  # only the "\u2581word" pieces may be generated


def rand(*shape: int, std: float = 0.1) -> np.ndarray:  # type: ignore[type-arg]
    return (rng.standard_normal(shape) * std).astype(np.float32)


w = gguf.GGUFWriter(path, "llama")
w.add_name("tiny-random-llama")
w.add_context_length(N_CTX)
w.add_embedding_length(N_EMBD)
w.add_block_count(N_LAYER)
w.add_feed_forward_length(N_FF)
w.add_head_count(N_HEAD)
w.add_head_count_kv(N_HEAD)
w.add_rope_dimension_count(N_EMBD // N_HEAD)
w.add_layer_norm_rms_eps(1e-5)
w.add_pooling_type(gguf.PoolingType.MEAN)  # one 64-d vector per input from /v1/embeddings
w.add_file_type(gguf.LlamaFileType.ALL_F32)
w.add_vocab_size(n_vocab)
w.add_tokenizer_model("llama")
w.add_token_list(tokens)
w.add_token_scores(scores)
w.add_token_types(types)
w.add_bos_token_id(1)
w.add_eos_token_id(2)
w.add_unk_token_id(0)
w.add_add_bos_token(True)
w.add_add_eos_token(False)
w.add_chat_template(
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")

# Dimension 0 of the residual stream is a constant 1.0 "bias channel": every embedding row
# has it, no layer writes to it, so after the final RMS norm it is always > 0.  Output rows of
# forbidden tokens read it with weight -100, which makes their logits hugely negative.
emb = rand(n_vocab, N_EMBD, std=1.0)
emb[:, 0] = 1.0
w.add_tensor("token_embd.weight", emb)
for i in range(N_LAYER):
    p = f"blk.{i}."
    w.add_tensor(p + "attn_norm.weight", np.ones(N_EMBD, np.float32))
    for name in ("attn_q", "attn_k", "attn_v"):
        w.add_tensor(p + name + ".weight", rand(N_EMBD, N_EMBD, std=0.3))
    wo = rand(N_EMBD, N_EMBD)
    wo[0] = 0.0
    w.add_tensor(p + "attn_output.weight", wo)
    w.add_tensor(p + "ffn_norm.weight", np.ones(N_EMBD, np.float32))
    w.add_tensor(p + "ffn_gate.weight", rand(N_FF, N_EMBD, std=0.3))
    w.add_tensor(p + "ffn_up.weight", rand(N_FF, N_EMBD, std=0.3))
    down = rand(N_EMBD, N_FF)
    down[0] = 0.0
    w.add_tensor(p + "ffn_down.weight", down)
w.add_tensor("output_norm.weight", np.ones(N_EMBD, np.float32))
out = rand(n_vocab, N_EMBD, std=1.0)
out[:, 0] = 0.0
out[~allowed] = 0.0
out[~allowed, 0] = -100.0
w.add_tensor("output.weight", out)

w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print(f"wrote {path}: vocab={n_vocab}")
