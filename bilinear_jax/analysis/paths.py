r"""Exact path expansion of a bilinear transformer's logits into named terms.

The residual stream is a sum of *paths*: the token embedding, each attention head's output,
each MLP's output. With the attention patterns and the RMSNorm scales (inverse RMS) frozen at
the forward pass being decomposed, attention and norms are linear maps of the stream, so a head
applied to a sum of paths is the sum of the head applied to each path. A bilinear MLP is a
quadratic form, so of a sum of paths it is exactly the sum over **ordered pairs** of paths::

    P((W Σ_a p_a) ⊙ (V Σ_b p_b)) = Σ_a Σ_b P((W p_a) ⊙ (V p_b)) = Σ_a Σ_b p_aᵀ B p_b.

With biases the constant input is one more path, ``bias`` (``W̃ x̃`` with ``x̃ = [x; 1]``): the
pair ``bias × bias`` is ``P(b_w ⊙ b_v) + b_p`` and ``a × bias`` is ``P((W p_a) ⊙ b_v)``. Each final
path, through the frozen final norm and the unembedding, is one term of the logits; the terms
sum to the forward logits up to float rounding. This extends the circuit framework of Elhage et
al. (2021), "direct path + one term per head (+ virtual heads)", to transformers with MLPs.

Naming (canonical names; :meth:`PathExpansion.term` also accepts looser spellings)::

    direct: embedding                            embedding → unembedding
    layer 0 head 1                               head 1 of layer 0 (reading the whole stream)
    layer 1 head 0 (layer 0 head 1)              with expand_heads=True: head of one path
    layer 0 MLP: embedding × layer 0 head 1      MLP pair (ordered: W reads the left, V the right)
    layer 0 MLP: bias × embedding                with mlp_bias
    layer 1 MLP: layer 0 MLP × layer 0 head 2    a later MLP reading layer 0's whole MLP output
    layer 1 MLP: [layer 0 MLP: embedding × embedding] × embedding    with expand_mlps=True
    layer 1 MLP: order > 2                       pairs above max_order, summed (see below)

By default a head reads the whole residual stream (one path per head, exact because attention
is linear given the frozen pattern) and a later layer reads an earlier MLP's output as one path
``layer l MLP``; ``expand_heads`` / ``expand_mlps`` expand those too (the number of terms then
grows quickly with depth).

Example::

    expansion = path_expansion(model, tokens)          # or path_expansion(model, params, tokens)
    expansion.max_relative_error                       # ~1e-7 in float32, ~1e-16 in float64
    expansion["layer 0 MLP, head 1 × embedding"]       # (B, T, vocab)
    expansion.sizes(position=-1)                       # RMS of each term, largest first
"""

from __future__ import annotations

import difflib
import functools
import itertools
import re
from typing import Any, Iterator, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

__all__ = ["PathExpansion", "TermNotFoundError", "normalize_term_name", "path_expansion"]

EMBEDDING = "embedding"
BIAS = "bias"
DIRECT = "direct: "
TIMES = " × "


# -- Names. -----------------------------------------------------------------------------------------


def _head_name(layer: int, head: int, source: str | None = None) -> str:
    base = f"layer {layer} head {head}"
    return base if source is None else f"{base} ({source})"


def _operand(name: str) -> str:
    """A path name as an operand of a pair: bracketed when it is itself a compound."""
    return f"[{name}]" if ("×" in name or ":" in name) else name


def _pair_name(layer: int, left: str, right: str) -> str:
    return f"layer {layer} MLP: {_operand(left)}{TIMES}{_operand(right)}"


def _mlp_name(layer: int) -> str:
    return f"layer {layer} MLP"


def normalize_term_name(name: str) -> str:
    """The lookup key of a term name: lower case, no punctuation, one spelling of each word.

    ``"Layer 0 MLP, head 1 x emb"`` → ``"layer 0 mlp head 1 × embedding"``. Accepts ``×``, ``x``,
    ``*`` or ``⊗`` for the product, ``L0H1``/``L0.H1`` for ``layer 0 head 1``, ``emb``/``embed``
    for ``embedding``.
    """
    s = name.lower().replace("⊗", "×").replace("*", "×")
    s = re.sub(r"(?<![a-z0-9])x(?![a-z0-9])", "×", s)
    s = re.sub(r"\bl(\d+)\s*\.?\s*h(\d+)\b", r"layer \1 head \2", s)
    s = re.sub(r"\bl(\d+)\s*\.?\s*mlp\b", r"layer \1 mlp", s)
    s = re.sub(r"\bl(\d+)\b", r"layer \1", s)
    s = re.sub(r"\bh(\d+)\b", r"head \1", s)
    s = re.sub(r"\b(emb|embed|embeddings|embedding)\b", "embedding", s)
    s = re.sub(r"\bbiases\b", "bias", s)
    s = re.sub(r"[,:;]", " ", s)
    s = re.sub(r"([×()\[\]])", r" \1 ", s)
    return " ".join(s.split())


_UNQUALIFIED_HEAD = re.compile(r"((?:layer \d+ )?head \d+)")


def _qualified_variants(query: str, n_layers: int) -> list[str]:
    """Every way to spell out ``head h`` without a layer as ``layer l head h`` (at most 64)."""
    pieces = _UNQUALIFIED_HEAD.split(query)
    options: list[list[str]] = []
    for i, piece in enumerate(pieces):
        if i % 2 == 0 or piece.startswith("layer "):
            options.append([piece])
            continue
        named = re.findall(r"layer (\d+)", "".join(pieces[:i]))
        layers = [int(named[0])] if named else []
        layers += [l for l in range(n_layers) if l not in layers]
        options.append([f"layer {l} {piece}" for l in layers])
    variants = ["".join(choice) for choice in itertools.islice(itertools.product(*options), 64)]
    return [v for v in variants if v != query]


# -- The result. ------------------------------------------------------------------------------------


def term_kind(name: str) -> str:
    """A term's coarse kind: ``direct: embedding``, ``heads``, or an MLP pair by operand kinds.

    ``"layer 0 MLP: layer 0 head 2 × embedding"`` → ``"MLP: head × embedding"``.
    """
    if name.startswith("direct"):
        return "direct: embedding"
    match = re.fullmatch(r"layer \d+ MLP: (.+)", name)
    operands = _top_level_operands(match.group(1)) if match else []
    if len(operands) != 2:
        return "heads" if "head" in name else name

    def kind(operand: str) -> str:
        if operand.startswith("["):
            return "MLP"
        first = re.match(r"(layer \d+ )?(head|MLP|embedding|bias)", operand)
        return first.group(2) if first else operand

    return f"MLP: {kind(operands[0])} × {kind(operands[1])}"


def _top_level_operands(pair: str) -> list[str]:
    """``"[a × b] × c"`` → ``["[a × b]", "c"]``: split at the ``×`` outside brackets and parentheses."""
    depth, start, parts = 0, 0, []
    for i, char in enumerate(pair):
        depth += char in "[("
        depth -= char in "])"
        if depth == 0 and pair.startswith(" × ", i):
            parts.append(pair[start:i])
            start = i + 3
    return parts + [pair[start:]]


@jax.tree_util.register_pytree_node_class
class PathExpansion:
    """Named terms that sum to a transformer's logits; a pytree (can be returned from ``jit``).

    Attributes:
      names: the canonical term names, in order of the forward pass.
      values: ``(n_terms, B, T, vocab)``, the terms stacked in the order of ``names``.
      logits: ``(B, T, vocab)``, the forward logits being decomposed.
      orders: each term's degree in the token embeddings (biases count 0). A grouped path (a
        head reading the whole stream, ``layer l MLP``) counts the highest order it contains.
      stream: names of the residual-stream paths the last layer read (without its own outputs).
    """

    def __init__(self, names: tuple[str, ...], values: jax.Array, logits: jax.Array,
                 orders: tuple[int, ...], stream: tuple[str, ...] = (), n_layers: int = 1):
        self.names, self.values, self.logits = tuple(names), values, logits
        self.orders, self.stream, self.n_layers = tuple(orders), tuple(stream), n_layers

    # Pytree protocol: the arrays are leaves, the names static.
    def tree_flatten(self):
        return (self.values, self.logits), (self.names, self.orders, self.stream, self.n_layers)

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        obj.values, obj.logits = children
        obj.names, obj.orders, obj.stream, obj.n_layers = aux
        return obj

    # -- The terms. -------------------------------------------------------------------------------

    @property
    def terms(self) -> dict[str, Float[Array, "B T vocab"]]:
        """``name → (B, T, vocab)`` term, in order of the forward pass."""
        return {name: self.values[i] for i, name in enumerate(self.names)}

    def total(self) -> Float[Array, "B T vocab"]:
        """The sum of all terms; equals :attr:`logits` up to float rounding."""
        return jnp.sum(self.values, axis=0)

    @property
    def max_relative_error(self) -> float | jax.Array:
        """``max |total − logits| / max |logits|`` (a Python float outside ``jit``)."""
        err = jnp.max(jnp.abs(self.total() - self.logits)) / jnp.maximum(jnp.max(jnp.abs(self.logits)), 1e-30)
        return err if isinstance(err, jax.core.Tracer) else float(err)

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def keys(self) -> tuple[str, ...]:
        return self.names

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self.resolve(name)
        except KeyError:
            return False
        return True

    def resolve(self, name: str) -> str:
        """The canonical name of the term ``name`` refers to; see :func:`normalize_term_name`.

        Spaces, commas, colons and case are ignored; ``head h`` without a layer may be any
        layer's head h (``"layer 0 MLP, head 1 × embedding"``), and ``embedding`` alone means
        ``direct: embedding``. Pairs are ordered: ``a × b`` is not ``b × a``. Raises KeyError
        listing the candidates when a name fits several terms, or the closest names when none.
        """
        if name in self.names:
            return name
        index = self._index()
        bare = {}
        for key, canonical in index.items():
            bare.setdefault(_strip_brackets(key), []).append(canonical)
        query = normalize_term_name(name)
        for attempt in (query, "direct " + query):
            if attempt in index:
                return index[attempt]
        matches: list[str] = []
        for candidate in [query, *_qualified_variants(query, self.n_layers)]:
            for attempt in (candidate, "direct " + candidate):
                hits = [index[attempt]] if attempt in index else bare.get(_strip_brackets(attempt), [])
                matches += [hit for hit in hits if hit not in matches]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            listed = "\n  ".join(matches)
            raise TermNotFoundError(f"{name!r} fits {len(matches)} terms; name the layers to choose one:\n  {listed}")
        close = difflib.get_close_matches(query, list(index), n=6, cutoff=0.5)
        if not close:  # fall back on sharing the most words
            words = set(query.split())
            close = sorted(index, key=lambda k: -len(words & set(k.split())))[:6]
        suggestions = "\n  ".join(index[c] for c in close)
        raise TermNotFoundError(f"No path-expansion term matches {name!r} (read as {query!r}); "
                       f"{len(self.names)} terms. Closest:\n  {suggestions}")

    def _index(self) -> dict[str, str]:
        return {normalize_term_name(n): n for n in self.names}

    def term(self, name: str) -> Float[Array, "B T vocab"]:
        """The term called ``name`` (tolerant lookup, see :meth:`resolve`)."""
        return self.values[self.names.index(self.resolve(name))]

    __getitem__ = term

    def order(self, name: str) -> int:
        return self.orders[self.names.index(self.resolve(name))]

    def sum(self, names) -> Float[Array, "B T vocab"]:
        """The sum of several terms (names, or a predicate on canonical names)."""
        chosen = [n for n in self.names if names(n)] if callable(names) else [self.resolve(n) for n in names]
        if not chosen:
            return jnp.zeros_like(self.logits)
        return jnp.sum(jnp.stack([self.values[self.names.index(n)] for n in chosen]), axis=0)

    def sizes(self, position: int | None = None, *, sort: bool = True) -> dict[str, float]:
        """The RMS of each term (over batch, positions and vocabulary), largest first.

        ``position`` restricts to one sequence position (e.g. ``-1``, where a task's answer is
        read).
        """
        values = self.values if position is None else self.values[:, :, position]
        rms = np.sqrt(np.mean(np.square(np.asarray(values, np.float64)).reshape(len(self.names), -1), axis=1))
        pairs = list(zip(self.names, (float(r) for r in rms)))
        if sort:
            pairs.sort(key=lambda item: -item[1])
        return dict(pairs)

    def top(self, k: int = 10, position: int | None = None) -> list[tuple[str, float]]:
        """The ``k`` largest terms by RMS, as ``(name, rms)``."""
        return list(self.sizes(position).items())[:k]

    def by_kind(self) -> dict[str, list[str]]:
        """Term names grouped by :func:`term_kind` (``"MLP: head × embedding"``, ...), in order."""
        groups: dict[str, list[str]] = {}
        for name in self.names:
            groups.setdefault(term_kind(name), []).append(name)
        return groups

    # -- Display. ---------------------------------------------------------------------------------

    def __repr__(self) -> str:
        shape = tuple(self.logits.shape)
        if isinstance(self.values, jax.core.Tracer):
            return f"PathExpansion({len(self.names)} terms, logits {shape})"
        return (f"PathExpansion({len(self.names)} terms, logits {shape}, "
                f"max relative error {self.max_relative_error:.2e})")

    def __treescope_repr__(self, path: str | None, subtree_renderer: Any):
        from treescope import repr_lib

        attributes = {"terms": self.terms, "logits": self.logits, "orders": dict(zip(self.names, self.orders))}
        if not isinstance(self.values, jax.core.Tracer):
            attributes["max_relative_error"] = self.max_relative_error
        return repr_lib.render_object_constructor(
            object_type=type(self), attributes=attributes, path=path,
            subtree_renderer=subtree_renderer, roundtrippable=False,
        )


class TermNotFoundError(KeyError):
    """No term matches a name; the message lists the closest names."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _strip_brackets(key: str) -> str:
    return " ".join(key.replace("[", " ").replace("]", " ").split())


# -- The expansion. -------------------------------------------------------------------------------


class _Paths(NamedTuple):
    """Several paths stacked on a leading axis, so that each step is one array operation."""

    names: tuple[str, ...]
    values: jax.Array  # (n, B, T, d_model)
    orders: tuple[int, ...]


def _concat(groups: list[_Paths]) -> _Paths:
    return _Paths(tuple(n for g in groups for n in g.names),
                  jnp.concatenate([g.values for g in groups]) if len(groups) > 1 else groups[0].values,
                  tuple(o for g in groups for o in g.orders))


def _norm(norm: nnx.Module | None, x: jax.Array, inverse_rms: jax.Array | None) -> jax.Array:
    """The frozen-scale norm (linear in ``x``); ``x`` may carry a leading paths axis."""
    return x if norm is None else norm(x, inverse_rms)


def _check_model(model: nnx.Module) -> None:
    for attribute in ("blocks", "n_layers", "embed_tokens", "final_norm", "W_U"):
        if not hasattr(model, attribute):
            raise TypeError(f"path_expansion needs a bilinear_jax Transformer; got {type(model).__name__} "
                            f"(no {attribute!r}).")
    kind = getattr(model, "mlp_kind", None)
    if kind is not None and kind != "bilinear":
        raise ValueError(
            f"path_expansion needs bilinear MLPs (or none): the expansion of an MLP into one term per "
            f"ordered pair of input paths is exact only for a bilinear MLP, and this model's MLPs are "
            f"{kind!r}. Freezing cannot make a {kind!r} MLP multilinear in its input."
        )


def _parse_args(args: tuple, params: Any) -> tuple[Any, jax.Array]:
    if len(args) == 1:
        return params, args[0]
    if len(args) == 2:
        if params is not None:
            raise TypeError("params given both positionally and by keyword.")
        return args[0], args[1]
    raise TypeError("Call path_expansion(model, tokens) or path_expansion(model, params, tokens).")


def _split_with_params(model: nnx.Module, params: Any) -> tuple[Any, nnx.State]:
    """``model``'s graph and state, with ``params`` (an ``nnx.State`` such as
    ``nnx.state(model, nnx.Param)``) in place of its own values. The model is not modified."""
    graphdef, state = nnx.split(model)
    if params is None:
        return graphdef, state
    flat = dict(nnx.to_flat_state(state))
    given = dict(nnx.to_flat_state(params))
    unknown = [path for path in given if path not in flat]
    if unknown:
        raise ValueError(f"params has entries the model lacks, e.g. {'/'.join(map(str, unknown[0]))}.")
    flat.update(given)
    return graphdef, nnx.from_flat_state(flat)


def _heads_of_paths(attn: nnx.Module, xs: jax.Array, pattern: jax.Array) -> jax.Array:
    """``(N, B, T, d)`` normalised paths → ``(N, B, heads, T, d)`` per-head outputs, frozen pattern."""
    n, b = xs.shape[:2]
    flat_pattern = jnp.broadcast_to(pattern, (n, *pattern.shape)).reshape(n * b, *pattern.shape[1:])
    out = attn.head_outputs(xs.reshape(n * b, *xs.shape[2:]), flat_pattern)
    return out.reshape(n, b, *out.shape[1:])


def path_expansion(
    model: nnx.Module,
    *args: Any,
    params: nnx.State | None = None,
    max_order: int | None = None,
    expand_heads: bool = False,
    expand_mlps: bool = False,
) -> PathExpansion:
    """Decompose ``model(tokens)`` into named terms, one per path through the network.

    Call as ``path_expansion(model, tokens)`` or ``path_expansion(model, params, tokens)`` (the
    latter, or ``params=`` by keyword, evaluates a copy of ``model`` holding ``params``, an
    ``nnx.State`` such as ``nnx.state(model, nnx.Param)``: convenient under ``jax.jit``, e.g.
    ``jax.jit(lambda p, t: path_expansion(model, p, t))(params, tokens)``). The model is not
    modified.

    Attention patterns and norm inverse-RMS values are frozen at the forward pass on ``tokens``;
    given those the model is multilinear in its paths and the terms sum to the logits exactly up
    to float rounding (relative error ~1e-7 in float32, ~1e-16 in float64; use a model without
    low-precision ``dtype`` for exactness). The expansion runs as one compiled program, cached
    per model structure, token shape and options.

    Args:
      model: a :class:`bilinear_jax.models.transformer.Transformer` with bilinear MLPs, or
        attention-only (``mlp=None``). Other MLP kinds raise ValueError.
      tokens: int ``(B, T)``.
      params: optional parameters to use instead of the model's.
      max_order: if given, the pair terms of an MLP whose order (degree in the token
        embeddings; biases count 0) exceeds it are summed into one term
        ``layer l MLP: order > {max_order}`` (also one path for later layers). The sum stays exact.
      expand_heads: a head applied to each stream path separately, ``layer l head h (path)``,
        instead of one path per head reading the whole stream.
      expand_mlps: later layers read each MLP pair term as its own path instead of one path
        ``layer l MLP`` per MLP.

    Returns:
      A :class:`PathExpansion`: ``.terms`` (name → ``(B, T, vocab)``), ``.logits``,
      ``.total()``, ``.max_relative_error``, lookup by name, ``.sizes()``.
    """
    params, tokens = _parse_args(args, params)
    _check_model(model)
    if max_order is not None and max_order < 0:
        raise ValueError(f"max_order must be non-negative, got {max_order}.")
    chex.assert_rank(tokens, 2)
    graphdef, state = _split_with_params(model, params)
    # One compiled program per model structure, token shape and options (cached across calls;
    # inlined when path_expansion itself runs under jit).
    return _expand_jit(graphdef, state, jnp.asarray(tokens), max_order=max_order, expand_heads=expand_heads,
                       expand_mlps=expand_mlps)


@functools.partial(jax.jit, static_argnames=("graphdef", "max_order", "expand_heads", "expand_mlps"))
def _expand_jit(graphdef, state, tokens, *, max_order, expand_heads, expand_mlps) -> PathExpansion:
    return _expand(nnx.merge(graphdef, state), tokens, max_order, expand_heads, expand_mlps)


def _expand(model: nnx.Module, tokens: jax.Array, max_order: int | None, expand_heads: bool,
            expand_mlps: bool) -> PathExpansion:
    logits, inter = model(tokens, return_intermediates=True)
    embedding = model.embed_tokens(tokens)[None]
    stream = _Paths((EMBEDDING,), embedding, (1,))  # what the next layer reads
    outputs = [_Paths((DIRECT + EMBEDDING,), embedding, (1,))]  # contributions to the final stream

    for layer in range(model.n_layers):
        block = model.block(layer)
        pattern = inter["pattern"][layer]

        # Attention: linear in its input given the frozen pattern and norm scale.
        attn_rms = inter["attn_inverse_rms"][layer] if block.norm1 is not None else None
        if expand_heads:
            heads = _heads_of_paths(block.attn, _norm(block.norm1, stream.values, attn_rms), pattern)
            n_heads = heads.shape[2]
            heads = jnp.swapaxes(heads, 1, 2).reshape(-1, heads.shape[1], *heads.shape[3:])  # (N·H, B, T, d)
            new = _Paths(tuple(_head_name(layer, h, src) for src in stream.names for h in range(n_heads)), heads,
                         tuple(o for o in stream.orders for _ in range(n_heads)))
        else:
            x = _norm(block.norm1, jnp.sum(stream.values, axis=0), attn_rms)
            heads = jnp.swapaxes(block.attn.head_outputs(x, pattern), 0, 1)  # (H, B, T, d)
            new = _Paths(tuple(_head_name(layer, h) for h in range(heads.shape[0])), heads,
                         (max(stream.orders),) * heads.shape[0])
        stream = _concat([stream, new])
        outputs.append(new)

        if block.mlp is None:
            continue
        mlp_rms = inter["mlp_inverse_rms"][layer] if block.norm2 is not None else None
        pairs = _mlp_pairs(block, layer, stream, mlp_rms, max_order)
        outputs.append(pairs)
        if expand_mlps:
            stream = _concat([stream, pairs])
        else:
            grouped = _Paths((_mlp_name(layer),), jnp.sum(pairs.values, axis=0, keepdims=True), (max(pairs.orders),))
            stream = _concat([stream, grouped])

    final = _concat(outputs)
    resid = final.values  # (K, B, T, d)
    final_rms = inter.get("final_inverse_rms") if model.final_norm is not None else None
    values = model.unembed_resid(resid.reshape(-1, *resid.shape[2:]),
                                 None if final_rms is None else jnp.tile(final_rms, (resid.shape[0], 1, 1)))
    values = values.reshape(resid.shape[:2] + values.shape[1:])
    return PathExpansion(final.names, values, logits, final.orders, stream.names, model.n_layers)


def _mlp_pairs(block: nnx.Module, layer: int, stream: _Paths, inverse_rms: jax.Array | None,
               max_order: int | None) -> _Paths:
    """One path per ordered pair of input paths (and the bias): ``P((W n(p_a) + ·) ⊙ (V n(p_b) + ·))``."""
    mlp = block.mlp
    if mlp.kind != "bilinear":
        raise ValueError(f"Layer {layer}'s MLP is {mlp.kind!r}; path_expansion needs bilinear MLPs.")
    if mlp.down is None:
        raise ValueError("path_expansion needs MLPs with an output projection.")
    xs = _norm(block.norm2, stream.values, inverse_rms)  # (N, B, T, d)
    dtype = mlp.dtype or jnp.result_type(xs, mlp.up[...])
    pre = jnp.einsum("nbti,ich->nbtch", xs.astype(dtype), mlp.up[...].astype(dtype))
    left, right = pre[..., 0, :], pre[..., 1, :]  # W n(p_a), V n(p_b): (N, B, T, h)
    names, orders = list(stream.names), list(stream.orders)
    if mlp.up_bias is not None:  # the constant input is one more path
        bias = mlp.up_bias[...].astype(dtype)
        left = jnp.concatenate([left, jnp.broadcast_to(bias[0], (1, *left.shape[1:]))])
        right = jnp.concatenate([right, jnp.broadcast_to(bias[1], (1, *right.shape[1:]))])
        names, orders = names + [BIAS], orders + [0]
    down = mlp.down[...].astype(dtype)
    n = len(names)
    out = jnp.einsum("mbth,nbth,ho->mnbto", left, right, down).reshape(n * n, *left.shape[1:3], -1)
    if mlp.down_bias is not None:  # b_p sits with bias × bias, as in the tensor over x̃ = [x; 1]
        out = out + jnp.zeros((n * n, 1, 1, 1), out.dtype).at[-1].set(1) * mlp.down_bias[...].astype(out.dtype)

    pair_names = [_pair_name(layer, names[a], names[b]) for a in range(n) for b in range(n)]
    pair_orders = [orders[a] + orders[b] for a in range(n) for b in range(n)]
    if max_order is None or max(pair_orders) <= max_order:
        return _Paths(tuple(pair_names), out, tuple(pair_orders))
    keep = [i for i, o in enumerate(pair_orders) if o <= max_order]
    high = [i for i, o in enumerate(pair_orders) if o > max_order]
    kept = jnp.take(out, jnp.asarray(keep, jnp.int32), axis=0)
    lumped = jnp.sum(jnp.take(out, jnp.asarray(high, jnp.int32), axis=0), axis=0, keepdims=True)
    return _Paths(tuple(pair_names[i] for i in keep) + (f"layer {layer} MLP: order > {max_order}",),
                  jnp.concatenate([kept, lumped]), tuple(pair_orders[i] for i in keep) + (max(pair_orders),))
