"""`transformers` classes around the ShareBERT models (docs/model.md, "Hugging Face folders").

Thin: each class builds the sharebert model of its task and adopts its submodules, so the state-dict keys
are sharebert's (and the reference's), and forward calls that model and repackages its output as a
`transformers` output object. Importing this module imports `transformers`; sharebert itself never
does. A model folder carries this module, with the config and model modules it needs, as its remote code
(`remote_code.py` generates it), so the folder loads with `trust_remote_code=True` where sharebert is not
installed.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import ClassVar

import torch
from torch import Tensor, nn
from transformers import PretrainedConfig, PreTrainedModel, modeling_outputs

from .config import ShareBertConfig
from .modeling import (
    ShareBertForMaskedLM,
    ShareBertForSequenceClassification,
    ShareBertModel,
    _initial_value,
    _mean_loss,
)

# Saved key -> module key, for fused_linear_layer=false (the reverse is applied when transformers saves).
UNFUSED_KEY_MAPPING = {r"\.transform\.dense_act\.dense\.": ".transform.dense_act."}


class ShareBertHfConfig(PretrainedConfig):
    """A config.json written by sharebert, read by `transformers.AutoConfig`; `sharebert()` gives the model's."""

    model_type = "bert"  # what sharebert and the reference write (transformers needs trust_remote_code then)

    def __init__(self, **kwargs):
        own = {f.name: kwargs.pop(f.name, f.default) for f in dataclasses.fields(ShareBertConfig)}
        num_labels = own.pop("num_labels")
        if "id2label" not in kwargs:
            kwargs["num_labels"] = num_labels
        kwargs.setdefault("tie_word_embeddings", False)  # the MLM decoder has its own weights
        super().__init__(**kwargs)
        for name, value in own.items():
            setattr(self, name, value)
        self.sharebert()  # a bad setting fails here, as in sharebert

    def sharebert(self) -> ShareBertConfig:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(ShareBertConfig)}
        return ShareBertConfig(**{**values, "num_labels": self.num_labels})


class _ShareBertHfBase(PreTrainedModel):
    config_class = ShareBertHfConfig
    base_model_prefix = "bert"
    # The alias of cls.predictions.bias that sharebert writes for the reference (sparse_mask_prediction=false).
    _keys_to_ignore_on_load_unexpected: ClassVar[list[str]] = [r"cls\.predictions\.decoder\.bias"]
    _sharebert_class = None  # the sharebert model of the task

    def __init__(self, config: ShareBertHfConfig):
        super().__init__(config)
        # A tuple: not a submodule, so the keys are those of the modules adopted by _build.
        self._sharebert = (self._build(config.sharebert()),)
        self._init_generator = torch.Generator().manual_seed(0)
        self.post_init()

    def _build(self, config: ShareBertConfig) -> nn.Module:
        """The task's sharebert model, whose submodules become this model's own."""
        model = self._sharebert_class(config)
        for name, child in model.named_children():
            self.add_module(name, child)
        return model

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        config = kwargs.get("config")
        if isinstance(config, ShareBertHfConfig) and not config.fused_linear_layer:
            # Such folders keep the reference's spelling of the MLM dense layer (docs/model.md, Model folders).
            kwargs.setdefault("key_mapping", UNFUSED_KEY_MAPPING)
        return super().from_pretrained(*args, **kwargs)

    @property
    def sharebert_model(self) -> nn.Module:
        """The sharebert model whose submodules this model holds."""
        return self._sharebert[0]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """sharebert's initialization (docs/specification.md section 7) for weights a checkpoint lacks."""
        config = self.config.sharebert()
        for name, p in module.named_parameters(recurse=False):
            value = _initial_value(module, name, p, self._init_generator, config.initializer_range, config)
            p.copy_(value.to(p.dtype))

    def get_input_embeddings(self) -> nn.Module:
        return self.bert.embeddings.word_embeddings

    def _run(self, output_hidden_states: bool | None, *args) -> tuple:
        """(the sharebert model's output, the hidden states: embeddings then each layer, or None)."""
        wanted = output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        if not wanted:
            return self.sharebert_model(*args), None
        states = []
        modules = [self.bert.embeddings, *self.bert.encoder.layer]
        with contextlib.ExitStack() as hooks:
            for module in modules:
                handle = module.register_forward_hook(lambda _module, _inputs, output: states.append(output))
                hooks.callback(handle.remove)
            output = self.sharebert_model(*args)
        return output, tuple(states[: len(modules)])


class ShareBertHfModel(_ShareBertHfBase):
    """The encoder: last_hidden_state [B, S, H] and pooler_output [B, H]."""

    def _build(self, config: ShareBertConfig) -> nn.Module:
        self.bert = ShareBertModel(config)  # under `bert.`, as in the task models
        return self.bert

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> modeling_outputs.BaseModelOutputWithPooling:
        output, hidden_states = self._run(output_hidden_states, input_ids, token_type_ids, attention_mask)
        return modeling_outputs.BaseModelOutputWithPooling(
            last_hidden_state=output.last_hidden_state,
            pooler_output=output.pooler_output,
            hidden_states=hidden_states,
        )


class ShareBertHfForMaskedLM(_ShareBertHfBase):
    """Masked LM: logits [B, S, V] for every position; `labels` [B, S] with -100 where there is no target."""

    _sharebert_class = ShareBertForMaskedLM

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        labels: Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> modeling_outputs.MaskedLMOutput:
        output, hidden_states = self._run(output_hidden_states, input_ids, token_type_ids, attention_mask)
        loss = None if labels is None else _mean_loss(output.logits, labels)
        return modeling_outputs.MaskedLMOutput(loss=loss, logits=output.logits, hidden_states=hidden_states)


class ShareBertHfForSequenceClassification(_ShareBertHfBase):
    """Classifier: logits [B, num_labels]; cross-entropy on `labels`, or MSE when num_labels == 1."""

    _sharebert_class = ShareBertForSequenceClassification

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        labels: Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> modeling_outputs.SequenceClassifierOutput:
        output, hidden_states = self._run(output_hidden_states, input_ids, token_type_ids, attention_mask, labels)
        return modeling_outputs.SequenceClassifierOutput(
            loss=output.loss, logits=output.logits, hidden_states=hidden_states
        )
