"""Pictures of relevance: PNG heatmaps, grids and feature bars (`heatmaps`), a text's tokens coloured by relevance as
an HTML page or a PNG (`text_page`), the panel around each picture with its title, colour scale and faithfulness
curves (`figure`), and the one colour map (`colormap`).

Imports: service.modality (a text's tokens and words).
"""
