"""Credits for the public-domain paintings in ../shared/data/styles, keyed by file stem."""

PAINTINGS = {
    "starry_night": ("The Starry Night", "Vincent van Gogh", "1889"),
    "vangogh_cafe_terrace_at_night": ("Café Terrace at Night", "Vincent van Gogh", "1888"),
    "vangogh_wheatfield_with_crows": ("Wheatfield with Crows", "Vincent van Gogh", "1890"),
    "the_scream": ("The Scream", "Edvard Munch", "1893"),
    "hokusai_great_wave": ("The Great Wave off Kanagawa", "Katsushika Hokusai", "c. 1831"),
    "hokusai_great_wave_crop": ("The Great Wave off Kanagawa (crop)", "Katsushika Hokusai", "c. 1831"),
    "hokusai_red_fuji": ("Fine Wind, Clear Morning", "Katsushika Hokusai", "c. 1831"),
    "hiroshige_sudden_shower_ohashi": ("Sudden Shower over Shin-Ōhashi Bridge", "Utagawa Hiroshige", "1857"),
    "hiroshige_tokaido_nihonbashi": ("Nihonbashi, Morning View", "Utagawa Hiroshige", "1833"),
    "sharaku_otani_oniji_edobei": ("Ōtani Oniji III as Yakko Edobei", "Tōshūsai Sharaku", "1794"),
    "korin_irises_screen": ("Irises screen", "Ogata Kōrin", "c. 1705"),
    "kandinsky_composition_vii": ("Composition VII", "Wassily Kandinsky", "1913"),
    "picabia_udnie": ("Udnie", "Francis Picabia", "1913"),
    "monet_impression_sunrise": ("Impression, Sunrise", "Claude Monet", "1872"),
    "monet_water_lilies": ("Water Lilies", "Claude Monet", "c. 1906–1919"),
    "monet_haystacks": ("Haystacks", "Claude Monet", "1890–91"),
    "monet_woman_with_parasol": ("Woman with a Parasol", "Claude Monet", "1875"),
    "seurat_grande_jatte": ("A Sunday Afternoon on La Grande Jatte", "Georges Seurat", "1884–86"),
    "klimt_the_kiss": ("The Kiss", "Gustav Klimt", "1907–08"),
    "shipwreck": ("The Shipwreck", "J. M. W. Turner", "1805"),
    "turner_fighting_temeraire": ("The Fighting Temeraire", "J. M. W. Turner", "1839"),
    "cezanne_mont_sainte_victoire_large_pine": ("Mont Sainte-Victoire with Large Pine", "Paul Cézanne", "c. 1887"),
    "cezanne_apples_and_oranges": ("Apples and Oranges", "Paul Cézanne", "c. 1899"),
    "renoir_moulin_de_la_galette": ("Bal du moulin de la Galette", "Pierre-Auguste Renoir", "1876"),
    "renoir_luncheon_boating_party": ("Luncheon of the Boating Party", "Pierre-Auguste Renoir", "1880–81"),
    "mondrian_composition_1913": ("Composition", "Piet Mondrian", "c. 1913"),
    "leger_contrast_of_forms": ("Contrast of Forms", "Fernand Léger", "1913"),
    "gauguin_riders_on_the_beach": ("Riders on the Beach", "Paul Gauguin", "1902"),
    "whistler_nocturne_falling_rocket": ("Nocturne in Black and Gold – The Falling Rocket",
                                         "James McNeill Whistler", "1875"),
    "woman-with-hat-matisse": ("Woman with a Hat", "Henri Matisse", "1905"),
}


def credit_for(stem: str) -> dict:
    title, artist, year = PAINTINGS.get(stem, (stem.replace("_", " "), "", ""))
    return {"title": title, "artist": artist, "year": year}
