//! The product model and the embedded seed catalog.

use serde::Serialize;

/// One product.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Product {
    /// Stable id.
    pub id: u32,
    /// Display name.
    pub name: String,
    /// Price in the shop's currency.
    pub price: f64,
    /// Category (`electronics`, `books`, `home`, `sports`, `grocery`).
    pub category: String,
    /// Units in stock.
    pub stock: u32,
}

const SEED: &[(&str, f64, &str, u32)] = &[
    ("Wireless Mouse", 24.99, "electronics", 120),
    ("Mechanical Keyboard", 89.00, "electronics", 45),
    ("27\" Monitor", 229.50, "electronics", 18),
    ("USB-C Hub", 39.90, "electronics", 75),
    ("Noise-Cancelling Headphones", 179.00, "electronics", 30),
    ("Designing Data-Intensive Applications", 42.00, "books", 60),
    ("The Rust Programming Language", 39.95, "books", 85),
    ("Distributed Systems Observability", 29.99, "books", 25),
    ("Site Reliability Engineering", 44.50, "books", 40),
    ("Zero To Production In Rust", 49.00, "books", 55),
    ("Pour-Over Coffee Set", 34.00, "home", 22),
    ("Cast Iron Skillet", 27.75, "home", 38),
    ("Desk Lamp", 31.20, "home", 64),
    ("Linen Throw Blanket", 58.00, "home", 12),
    ("Bamboo Cutting Board", 19.50, "home", 90),
    ("Trail Running Shoes", 119.00, "sports", 26),
    ("Yoga Mat", 25.00, "sports", 70),
    ("Adjustable Dumbbells", 199.00, "sports", 8),
    ("Water Bottle 1L", 14.99, "sports", 150),
    ("Cycling Helmet", 64.00, "sports", 19),
    ("Single-Origin Coffee Beans", 16.50, "grocery", 200),
    ("Matcha Powder", 22.00, "grocery", 47),
    ("Dark Chocolate 85%", 4.25, "grocery", 310),
    ("Olive Oil 750ml", 12.80, "grocery", 0),
];

/// The catalog the service starts with (24 products in 5 categories).
pub fn seed() -> Vec<Product> {
    SEED.iter()
        .enumerate()
        .map(|(i, (name, price, category, stock))| Product {
            id: i as u32 + 1,
            name: (*name).to_string(),
            price: *price,
            category: (*category).to_string(),
            stock: *stock,
        })
        .collect()
}
