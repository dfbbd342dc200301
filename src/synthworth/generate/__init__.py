"""``synthworth generate``: a labelled synthetic Dataset from a trained generator or a pretrained
text-to-image pipeline.

The output folder OUT is the same currency as a prepared real Dataset::

    OUT/<class>/seed-000042.png     one image per seed, at the training size (--size)
    OUT/metadata.jsonl              Hugging Face imagefolder rows: file_name, label, class_name, split,
                                    generator, seed (+ prompt, negative_prompt, scheduler, steps, guidance)
    OUT/train/, OUT/test/, OUT/README.md   the Hugging Face layout (synthworth.data.hf): split folders of
                                    hard links to the images, each with a metadata.parquet, and a
                                    dataset card; load_dataset(OUT) and load_dataset("imagefolder",
                                    data_dir=OUT) give the splits with a ClassLabel, ImageFolder(OUT/train)
                                    the same indices
    OUT/images.npy, labels.npy, splits.npy, items.jsonl, manifest.json (last): the packed form
    OUT/generate.json               the plan: everything that decides the images (checked on resume)
    OUT/generation.jsonl            one line per finished block of images: session, shard, images, seconds,
                                    sampling seconds and device (synthworth.data.timing)
    OUT/.synthworth, .synthworth*.lock   the ownership marker and the writers' locks (synthworth.safety)
    OUT-native/<class>/...png       the same images at the generator's native size, where it differs

Class folders are file-name-safe forms of the class names (:func:`synthworth.data.hf.class_folders`:
no split word `datasets` would read as a split); the real names are in the metadata and the card.
``--overwrite`` replaces only a generation folder synthworth wrote (its ``.synthworth`` marker
lists everything in it), never an input or a foreign folder.

Reproducible and resumable:

- image ``i`` has seed ``seed + i`` (in its file name); its class and prompt follow from ``i`` and
  that seed alone;
- images are made in fixed blocks of ``batch_size`` consecutive indices, and a block with a
  missing file is made again whole: every image is computed in the same batch as in an
  uninterrupted run (batched floating point depends on the batch), so the files come out the same;
- a PNG is written under a temporary name and renamed, with its metadata row in a PNG text chunk:
  the metadata and the packed form are rebuilt from the PNGs alone, once all are there, so a
  killed run never leaves a manifest;
- ``--shard i/n`` and the processes of ``accelerate launch`` each take every n-th block; the
  metadata is written at the end by one process, or by ``synthworth data merge`` for shards;
- each writer holds a lock for its share of the blocks: a second process on an overlapping share
  of the same folder is refused with the holder named; every finished block is logged at once,
  so the images and seconds in the manifest add up over killed, resumed and sharded runs
  (:mod:`synthworth.generate.folder`).
"""

from synthworth.generate.config import GenerateConfig, SamplingOptions
from synthworth.generate.finish import finalize, merge
from synthworth.generate.folder import Shard
from synthworth.generate.plan import native_folder
from synthworth.generate.run import GenerateReport, generate

__all__ = ["GenerateConfig", "GenerateReport", "SamplingOptions", "Shard", "generate", "merge",
           "finalize", "native_folder"]
